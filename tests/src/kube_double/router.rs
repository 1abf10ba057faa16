//! HTTP front: authentication, authorization, URL routing and the request log.
//!
//! `dispatch` is synchronous over the locked state and is shared by the HTTP service and by
//! the in-process helpers (`KubeDouble::get`), so both see exactly the same behaviour.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::Value;

use super::discovery::{self, ResourceType};
use super::errors::{self, Failure};
use super::handlers::{self, Target};
use super::objects::{parse_query, Selector, State, ADMIN_USER};
use super::status;
use super::watch::{self, WatchSpec};
use super::{RequestLog, Shared};

pub(crate) type RespBody = BoxBody<Bytes, Infallible>;

/// A request reduced to what the double looks at.
pub(crate) struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub accept: &'a str,
    pub content_type: &'a str,
    pub token: Option<&'a str>,
    pub user_agent: &'a str,
    pub body: &'a [u8],
}

pub(crate) enum Outcome {
    Json(u16, Value, &'static str),
    NotFoundText,
    Watch(Box<WatchSpec>),
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Outcome {
        let Failure::Status(code, body) = f;
        Outcome::Json(code, body, "application/json")
    }
}

/// Where a URL points.
enum Route {
    Version,
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
    OpenApiRoot,
    OpenApi(String),
    Resource {
        ty: Box<ResourceType>,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
}

fn route(state: &State, path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["version"] => Some(Route::Version),
        ["api"] => Some(Route::Api),
        ["apis"] => Some(Route::Apis),
        ["apis", g] => Some(Route::Group(g.to_string())),
        ["openapi", "v3"] => Some(Route::OpenApiRoot),
        ["openapi", "v3", rest @ ..] => Some(Route::OpenApi(rest.join("/"))),
        ["api", v] => state
            .group_version_known("", v)
            .then(|| Route::GroupVersion(String::new(), v.to_string())),
        ["apis", g, v] => state
            .group_version_known(g, v)
            .then(|| Route::GroupVersion(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => resource_route(state, "", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(state, g, v, rest),
        _ => None,
    }
}

fn resource_route(state: &State, group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    let some = |s: Option<&&str>| s.map(|x| x.to_string());
    if rest.len() >= 3 && rest[0] == "namespaces" {
        if let Some(ty) = state
            .find_type(group, version, rest[2])
            .filter(|t| t.namespaced)
        {
            if rest.len() > 5 {
                return None;
            }
            return checked(Route::Resource {
                ty: Box::new(ty),
                namespace: Some(rest[1].to_string()),
                name: some(rest.get(3)),
                sub: some(rest.get(4)),
            });
        }
    }
    let ty = state.find_type(group, version, rest.first()?)?;
    if rest.len() > 3 || (ty.namespaced && rest.len() > 1) {
        return None;
    }
    checked(Route::Resource {
        ty: Box::new(ty),
        namespace: None,
        name: some(rest.get(1)),
        sub: some(rest.get(2)),
    })
}

fn checked(r: Route) -> Option<Route> {
    if let Route::Resource {
        ty, sub: Some(s), ..
    } = &r
    {
        if !ty.subresources.contains(s) {
            return None;
        }
    }
    Some(r)
}

fn verb(method: &str, has_name: bool, watch: bool) -> &'static str {
    match (method, has_name) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// Handles one call against the locked state.
pub(crate) fn dispatch(state: &mut State, server_address: &str, call: &Call) -> Outcome {
    status::tick(state);
    let Some(user) = call.token.and_then(|t| state.tokens.get(t)).cloned() else {
        return errors::unauthorized().into();
    };
    let aggregated = discovery::wants_aggregated(call.accept);
    let Some(route) = route(state, call.path) else {
        return Outcome::NotFoundText;
    };
    let ok = |v: Value| Outcome::Json(200, v, "application/json");
    let d = state.discovery.clone();
    match route {
        Route::Version => ok(d.version()),
        Route::Api if aggregated => Outcome::Json(
            200,
            d.api(server_address, true),
            discovery::AGGREGATED_CONTENT_TYPE,
        ),
        Route::Api => ok(d.api(server_address, false)),
        Route::Apis if aggregated => Outcome::Json(
            200,
            d.apis(&state.custom, true),
            discovery::AGGREGATED_CONTENT_TYPE,
        ),
        Route::Apis => ok(d.apis(&state.custom, false)),
        Route::Group(g) => d.group(&g, &state.custom).map_or(Outcome::NotFoundText, ok),
        Route::OpenApiRoot => {
            let types: Vec<&ResourceType> = d.builtin.iter().chain(state.custom.iter()).collect();
            ok(discovery::openapi_root(&types))
        }
        Route::OpenApi(gv) => {
            let types: Vec<&ResourceType> = d.builtin.iter().chain(state.custom.iter()).collect();
            discovery::openapi_gv(&gv, &types).map_or(Outcome::NotFoundText, ok)
        }
        Route::GroupVersion(g, v) => {
            let gv = if g.is_empty() { v } else { format!("{g}/{v}") };
            d.resource_list(&gv, &state.custom)
                .map_or(Outcome::NotFoundText, ok)
        }
        Route::Resource {
            ty,
            namespace,
            name,
            sub,
        } => {
            let query = parse_query(call.query);
            let watching = query.get("watch").is_some_and(|w| w == "1" || w == "true");
            let verb = verb(call.method, name.is_some(), watching);
            let denied = if user == ADMIN_USER {
                state.forbidden.contains(&ty.plural)
            } else {
                true
            };
            if denied {
                return errors::forbidden(
                    &user,
                    verb,
                    &ty.plural,
                    &ty.group,
                    namespace.as_deref(),
                    name.as_deref(),
                )
                .into();
            }
            let target = Target {
                ty: &ty,
                namespace: namespace.as_deref(),
                name: name.as_deref(),
                subresource: sub.as_deref(),
                query: &query,
                accept: call.accept,
                user_agent: call.user_agent,
            };
            resource(state, &target, call, verb).unwrap_or_else(Outcome::from)
        }
    }
}

fn resource(state: &mut State, t: &Target, call: &Call, verb: &str) -> Result<Outcome, Failure> {
    let ok = |code: u16, v: Value| Outcome::Json(code, v, "application/json");
    Ok(match verb {
        "get" => ok(200, handlers::get(state, t)?),
        "list" => ok(200, handlers::list(state, t)?),
        "watch" => {
            let selector = Selector::parse(t.query.get("labelSelector").map_or("", String::as_str))
                .map_err(|e| errors::bad_request(&e))?;
            let timeout = t
                .query
                .get("timeoutSeconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1800);
            Outcome::Watch(Box::new(WatchSpec {
                ty: t.ty.clone(),
                namespace: t.namespace.map(str::to_string),
                selector,
                from: t.query.get("resourceVersion").and_then(|r| r.parse().ok()),
                timeout: Duration::from_secs(timeout),
            }))
        }
        "create" => {
            let (code, v) = handlers::create(state, t, call.body)?;
            ok(code, v)
        }
        "update" => ok(200, handlers::replace(state, t, call.body)?),
        "patch" => {
            let (code, v) = handlers::patch(state, t, call.content_type, call.body)?;
            ok(code, v)
        }
        "delete" => ok(200, handlers::delete(state, t)?),
        _ => {
            let msg = "the server does not allow this method on the requested resource";
            ok(
                405,
                errors::status(405, Some("MethodNotAllowed"), msg, None),
            )
        }
    })
}

fn header(req: &Request<hyper::body::Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The hyper service: reads the request, dispatches, logs, answers.
pub(crate) async fn serve(
    req: Request<hyper::body::Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<RespBody>, Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let accept = header(&req, "accept");
    let content_type = header(&req, "content-type");
    let user_agent = header(&req, "user-agent");
    let auth = header(&req, "authorization");
    let token = auth
        .strip_prefix("Bearer ")
        .map(str::trim)
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let call = Call {
        method: &method,
        path: &path,
        query: &query,
        accept: &accept,
        content_type: &content_type,
        token: token.as_deref(),
        user_agent: &user_agent,
        body: &body,
    };
    let outcome = {
        let mut st = shared.state.lock().expect("state lock");
        dispatch(&mut st, &shared.address, &call)
    };
    let (status, ctype, body): (u16, String, RespBody) = match outcome {
        Outcome::Json(code, v, ct) => (code, ct.to_string(), full(v.to_string())),
        Outcome::NotFoundText => (
            404,
            "text/plain; charset=utf-8".into(),
            full("404 page not found\n".into()),
        ),
        Outcome::Watch(spec) => (
            200,
            "application/json".into(),
            watch::start(shared.state.clone(), *spec).boxed(),
        ),
    };
    {
        let mut st = shared.state.lock().expect("state lock");
        st.requests.push(RequestLog {
            method,
            path: if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            },
            status,
            accept,
            content_type,
        });
    }
    let resp = Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("cache-control", "no-cache, private")
        .body(body)
        .expect("response");
    Ok(resp)
}

fn full(text: String) -> RespBody {
    Full::new(Bytes::from(text)).boxed()
}
