//! The connection to the Kubernetes API: which cluster (config, in-cluster, `KUBECONFIG`, `~/.kube/config`), raw
//! requests that keep the HTTP status (201 "created" matters to rollback), the server's `Status` answers turned into
//! errors an operator can act on, and a discovery cache that is refreshed only when a kind is unknown.
//!
//! We speak to the API through `kube::Client::send` rather than the typed `Api`: the target only ever handles
//! manifests as JSON, and it needs the status code and the `Status` body of every failure.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use http::{Method, Request};
use serde_json::Value;
use tokio::sync::Mutex;

use super::plan::ObjectRef;
use super::KubeError;

/// The longest a TCP and TLS handshake with the API server may take (never longer than `request_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const APPLY_PATCH: &str = "application/apply-patch+yaml";
pub const METADATA_LIST: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";

/// How one kind is served, from discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespaced: bool,
}

impl Resource {
    /// The collection path: `/api/v1/namespaces/ns/configmaps`, or cluster-wide without a namespace.
    pub fn collection(&self, namespace: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let (true, Some(ns)) = (self.namespaced, namespace) {
            p.push_str("/namespaces/");
            p.push_str(&encode(ns));
        }
        p.push('/');
        p.push_str(&self.plural);
        p
    }

    pub fn item(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{}", self.collection(namespace), encode(name))
    }
}

/// An answer that was not a success, as the server described it.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// `(reason, field, message)` of each `details.causes` entry.
    pub causes: Vec<(String, String, String)>,
    /// `details.kind`: tells a missing namespace (`namespaces`) from a missing object.
    pub details_kind: String,
}

impl ApiFailure {
    fn parse(code: u16, body: &[u8]) -> ApiFailure {
        let status: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        if status.get("kind").and_then(Value::as_str) != Some("Status") {
            // e.g. `404 page not found` as text/plain for an unknown group/version.
            return ApiFailure {
                code,
                reason: String::new(),
                message: String::from_utf8_lossy(body)
                    .trim()
                    .chars()
                    .take(300)
                    .collect(),
                causes: Vec::new(),
                details_kind: String::new(),
            };
        }
        let causes = status
            .pointer("/details/causes")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        (
                            text(c.get("reason")),
                            text(c.get("field")),
                            text(c.get("message")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        ApiFailure {
            code,
            reason: text(status.get("reason")),
            message: text(status.get("message")),
            causes,
            details_kind: text(status.pointer("/details/kind")),
        }
    }

    /// One line for an operator: the code, the server's reason and message, and a hint for the common cases.
    pub fn describe(&self) -> String {
        let hint = match (self.code, self.reason.as_str()) {
            (401, _) => "; the agent's credentials were refused: renew the token or kubeconfig",
            (403, _) => "; grant the agent's account this permission (RBAC), or remove the object from the bundle",
            (500, _) if self.message.contains("failed to create typed patch object") => {
                "; a field has the wrong type or is not in the kind's schema: fix the manifest"
            }
            (404, _) if self.details_kind == "namespaces" => {
                "; create that namespace, or add a Namespace object to the bundle"
            }
            _ => "",
        };
        let reason = if self.reason.is_empty() {
            String::new()
        } else {
            format!(" {}", self.reason)
        };
        format!("{}{reason}: {}{hint}", self.code, self.message)
    }

    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }
}

/// The result of one request: the object (or list) and whether the server created something.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

pub struct Cluster {
    client: kube::Client,
    /// Where the client points, for error messages.
    pub server: String,
    pub field_manager: String,
    /// `group/version` -> its kinds; `None` remembers that the server does not serve that group/version.
    discovery: Mutex<HashMap<String, Option<HashMap<String, Resource>>>>,
}

/// Finds the cluster: the configured kubeconfig, else in-cluster, else `KUBECONFIG`, else `~/.kube/config`.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    field_manager: &str,
    timeout: Duration,
) -> Result<Cluster, KubeError> {
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let mut config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                KubeError::Config(format!(
                    "[kubernetes] kubeconfig {}: {e}; point it at a readable kubeconfig file",
                    path.display()
                ))
            })?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| {
                    KubeError::Config(format!(
                        "[kubernetes] kubeconfig {}: {e}",
                        path.display()
                    ))
                })?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            kube::Config::incluster().map_err(|e| {
                KubeError::Config(format!(
                    "running in a pod, but the in-cluster configuration is unusable: {e}; mount the service account token or set [kubernetes] kubeconfig"
                ))
            })?
        }
        None => kube::Config::from_kubeconfig(&options).await.map_err(|e| {
            KubeError::Config(format!(
                "no cluster configured: {e}; set [kubernetes] kubeconfig, KUBECONFIG, or run the agent in the cluster"
            ))
        })?,
    };
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    config.connect_timeout = Some(CONNECT_TIMEOUT.min(timeout));
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| KubeError::Config(format!("cannot build a client for {server}: {e}")))?;
    Ok(Cluster {
        client,
        server,
        field_manager: field_manager.to_string(),
        discovery: Mutex::new(HashMap::new()),
    })
}

/// Percent-encodes every byte outside `keep` and the unreserved characters.
fn escape(text: &str, keep: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A path segment. Kubernetes names are DNS labels or paths of them; anything else is escaped rather than trusted.
fn encode(segment: &str) -> String {
    escape(segment, b":")
}

/// A query parameter value.
pub fn query_escape(value: &str) -> String {
    escape(value, b"~")
}

impl Cluster {
    /// Sends one request. `Ok` for 2xx; `Err(Ok(failure))` for an answer that is not; `Err(Err(..))` when the server
    /// could not be reached at all.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, Result<ApiFailure, KubeError>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("accept", accept.unwrap_or("application/json"));
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).unwrap_or_default(),
            None => Vec::new(),
        };
        let req = req
            .body(kube::client::Body::from(bytes))
            .map_err(|e| Err(KubeError::Config(format!("bad request {path}: {e}"))))?;
        let unreachable = |e: kube::Error| {
            Err(KubeError::Unreachable {
                server: self.server.clone(),
                message: e.to_string(),
            })
        };
        let response = self.client.send(req).await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(unreachable)?;
        if !(200..300).contains(&status) {
            return Err(Ok(ApiFailure::parse(status, &body)));
        }
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// Server-side apply of one object (already carrying its namespace and our marks).
    pub async fn apply(
        &self,
        res: &Resource,
        r: &ObjectRef,
        body: &Value,
        force: bool,
    ) -> Result<Answer, Result<ApiFailure, KubeError>> {
        let path = format!(
            "{}?fieldManager={}{}",
            res.item(r.namespace.as_deref(), &r.name),
            query_escape(&self.field_manager),
            if force { "&force=true" } else { "" }
        );
        self.request(Method::PATCH, &path, Some(APPLY_PATCH), None, Some(body))
            .await
    }

    pub async fn get(
        &self,
        res: &Resource,
        r: &ObjectRef,
    ) -> Result<Option<Value>, Result<ApiFailure, KubeError>> {
        match self
            .request(
                Method::GET,
                &res.item(r.namespace.as_deref(), &r.name),
                None,
                None,
                None,
            )
            .await
        {
            Ok(a) => Ok(Some(a.body)),
            Err(Ok(f)) if f.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes in the background (dependents are collected by the garbage collector); true when it existed.
    pub async fn delete(
        &self,
        res: &Resource,
        r: &ObjectRef,
    ) -> Result<bool, Result<ApiFailure, KubeError>> {
        let options = serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
        match self
            .request(
                Method::DELETE,
                &res.item(r.namespace.as_deref(), &r.name),
                Some("application/json"),
                None,
                Some(&options),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(Ok(f)) if f.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The kind of `r` as the server serves it. Asks the server only when the group/version is not cached or does
    /// not (yet) know the kind: right after a CRD is applied its kinds appear.
    pub async fn resolve(&self, r: &ObjectRef) -> Result<Option<Resource>, KubeError> {
        let gv = r.api_version();
        {
            let cache = self.discovery.lock().await;
            if let Some(Some(kinds)) = cache.get(&gv) {
                if let Some(res) = kinds.get(&r.kind) {
                    return Ok(Some(res.clone()));
                }
            }
        }
        let kinds = self.discover(&r.group, &r.version).await?;
        let found = kinds.as_ref().and_then(|k| k.get(&r.kind)).cloned();
        self.discovery.lock().await.insert(gv, kinds);
        Ok(found)
    }

    async fn discover(
        &self,
        group: &str,
        version: &str,
    ) -> Result<Option<HashMap<String, Resource>>, KubeError> {
        let path = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let answer = match self.request(Method::GET, &path, None, None, None).await {
            Ok(a) => a,
            Err(Ok(f)) if f.code == 404 => return Ok(None),
            Err(Ok(f)) => {
                return Err(KubeError::Discovery {
                    group_version: path,
                    message: f.describe(),
                })
            }
            Err(Err(e)) => return Err(e),
        };
        let mut kinds = HashMap::new();
        for r in answer
            .body
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = r.get("name").and_then(Value::as_str).unwrap_or("");
            let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
            if name.contains('/') || kind.is_empty() {
                continue; // subresources such as deployments/status
            }
            kinds.insert(
                kind.to_string(),
                Resource {
                    group: group.to_string(),
                    version: version.to_string(),
                    plural: name.to_string(),
                    namespaced: r.get("namespaced").and_then(Value::as_bool) == Some(true),
                },
            );
        }
        Ok(Some(kinds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_api_layout() {
        let cm = Resource {
            group: String::new(),
            version: "v1".into(),
            plural: "configmaps".into(),
            namespaced: true,
        };
        assert_eq!(
            cm.item(Some("demo"), "app-config"),
            "/api/v1/namespaces/demo/configmaps/app-config"
        );
        assert_eq!(cm.collection(None), "/api/v1/configmaps");
        let crd = Resource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            plural: "customresourcedefinitions".into(),
            namespaced: false,
        };
        assert_eq!(
            crd.item(Some("ignored"), "widgets.example.com"),
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
        );
        assert_eq!(
            query_escape("outpost.dev/source=a b"),
            "outpost.dev%2Fsource%3Da%20b"
        );
    }

    #[test]
    fn failures_read_the_servers_status() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .data.mode","reason":"Conflict","details":{"causes":[{"reason":"FieldManagerConflict","message":"conflict with \"kubectl-client-side-apply\" using v1","field":".data.mode"}]},"code":409}"#;
        let f = ApiFailure::parse(409, body);
        assert_eq!(f.reason, "Conflict");
        assert_eq!(f.causes[0].1, ".data.mode");
        let text = ApiFailure::parse(404, b"404 page not found\n");
        assert_eq!(text.describe(), "404: 404 page not found");
        let typed = ApiFailure::parse(500, br#"{"kind":"Status","message":"failed to create typed patch object (demo/x; /v1, Kind=ConfigMap): .data.n: expected string, got &value.valueUnstructured{Value:1}","code":500}"#);
        assert!(
            typed.describe().contains("wrong type"),
            "{}",
            typed.describe()
        );
    }
}
