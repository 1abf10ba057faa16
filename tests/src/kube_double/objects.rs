//! The object store: objects keyed by (group, resource, namespace, name), one global
//! resourceVersion counter, the event log that watches replay, lists with label selectors and
//! exact `limit`/`continue` pagination.
//!
//! Everything lives in one `State` behind one mutex: the double serves a handful of test
//! clients, and a single lock makes every write atomic the way etcd transactions are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::discovery::{Discovery, ResourceType};
use super::errors::{self, Res};
use super::status::Action;
use super::RequestLog;

/// Store key; the derived order (group, resource, namespace, name) is also the list order,
/// which matches the real server's order by namespace/name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub(crate) fn new(ty: &ResourceType, namespace: &str, name: &str) -> Key {
        Key {
            group: ty.group.clone(),
            resource: ty.plural.clone(),
            namespace: if ty.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
    pub(crate) fn namespace_key(name: &str) -> Key {
        Key {
            group: String::new(),
            resource: "namespaces".into(),
            namespace: String::new(),
            name: name.to_string(),
        }
    }
}

/// One change, as a watch sees it; `old` lets label-filtered watches turn "stopped matching"
/// into DELETED.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: &'static str,
    pub key: Key,
    pub old: Option<Value>,
    pub obj: Value,
}

/// Behaviour switches of the simulated controllers.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub workloads_ready: bool,
    pub crd_delay: Duration,
    pub controller_delay: Duration,
    pub namespace_delete_delay: Duration,
    /// PEM published in every namespace's `kube-root-ca.crt`.
    pub root_ca: String,
}

pub(crate) struct State {
    pub rv: u64,
    pub objects: BTreeMap<Key, Value>,
    pub events: Vec<Event>,
    pub pending: Vec<(Instant, Action)>,
    /// Types served for established CRDs.
    pub custom: Vec<ResourceType>,
    pub discovery: Arc<Discovery>,
    pub opts: Options,
    /// Bearer token -> user name; the admin token maps to `kubernetes-admin`.
    pub tokens: HashMap<String, String>,
    pub admin_token: String,
    /// Resources the admin is denied (test-injected RBAC rules).
    pub forbidden: HashSet<String>,
    pub requests: Vec<RequestLog>,
}

pub(crate) const ADMIN_USER: &str = "kubernetes-admin";

impl State {
    pub(crate) fn new(discovery: Arc<Discovery>, opts: Options, admin_token: String) -> State {
        let mut tokens = HashMap::new();
        tokens.insert(admin_token.clone(), ADMIN_USER.to_string());
        let mut s = State {
            // Start where a fresh cluster roughly is, so resourceVersions look realistic.
            rv: 100,
            objects: BTreeMap::new(),
            events: Vec::new(),
            pending: Vec::new(),
            custom: Vec::new(),
            discovery,
            opts,
            tokens,
            admin_token,
            forbidden: HashSet::new(),
            requests: Vec::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            super::status::create_system_namespace(&mut s, ns);
        }
        s
    }

    /// The type served at `group/version/plural`, built-in or custom.
    pub(crate) fn find_type(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<ResourceType> {
        self.discovery
            .builtin
            .iter()
            .chain(self.custom.iter())
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub(crate) fn group_version_known(&self, group: &str, version: &str) -> bool {
        self.discovery
            .builtin
            .iter()
            .chain(self.custom.iter())
            .any(|t| t.group == group && t.version == version)
    }

    /// Stores `obj` under `key` with a new resourceVersion and records the event.
    pub(crate) fn put(&mut self, key: Key, mut obj: Value) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let old = self.objects.insert(key.clone(), obj.clone());
        self.events.push(Event {
            rv: self.rv,
            kind: if old.is_some() { "MODIFIED" } else { "ADDED" },
            key,
            old,
            obj: obj.clone(),
        });
        obj
    }

    /// Removes `key`, recording a DELETED event carrying the final state at a new version.
    pub(crate) fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.events.push(Event {
            rv: self.rv,
            kind: "DELETED",
            key: key.clone(),
            old: Some(obj.clone()),
            obj: obj.clone(),
        });
        Some(obj)
    }

    /// 404 Status naming the namespace when a namespaced write targets a missing one.
    pub(crate) fn require_namespace(&self, ty: &ResourceType, ns: &str) -> Res<()> {
        if ty.namespaced && !self.objects.contains_key(&Key::namespace_key(ns)) {
            return Err(errors::not_found("namespaces", "", ns));
        }
        Ok(())
    }

    /// Objects of `ty` (in `namespace` if given) matching `selector`, in key order.
    pub(crate) fn matching(
        &self,
        ty: &ResourceType,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Vec<(&Key, &Value)> {
        self.objects
            .iter()
            .filter(|(k, _)| k.group == ty.group && k.resource == ty.plural)
            .filter(|(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
            .filter(|(_, v)| selector.matches(v))
            .collect()
    }
}

/// A parsed `labelSelector`: every requirement must hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selector(Vec<Requirement>);

#[derive(Clone, Debug)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selector {
    pub(crate) fn parse(text: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let words: Vec<&str> = term.split_whitespace().collect();
            let req = if words.len() >= 3 && (words[1] == "in" || words[1] == "notin") {
                let rest = term
                    .split_once(words[1])
                    .map(|(_, r)| r.trim())
                    .unwrap_or_default();
                let inner = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| format!("invalid selector term {term:?}"))?;
                let values = inner.split(',').map(|v| v.trim().to_string()).collect();
                if words[1] == "in" {
                    Requirement::In(words[0].to_string(), values)
                } else {
                    Requirement::NotIn(words[0].to_string(), values)
                }
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else {
                Requirement::Exists(term.to_string())
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses (`a in (x,y),b` has two terms).
fn split_terms(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        out.last_mut().expect("non-empty").push(c);
    }
    out
}

/// One page of a list: items, the continue token when more remain, and how many remain.
pub(crate) struct Page {
    pub items: Vec<Value>,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

/// Cuts `all` (key order) into the page after `continue_token`, at most `limit` long. The
/// token is base64 JSON like the real server's (`{"v":..,"rv":..,"start":"<key>\u0000"}`).
pub(crate) fn paginate(
    all: Vec<(&Key, &Value)>,
    limit: Option<usize>,
    continue_token: Option<&str>,
    rv: u64,
) -> Res<Page> {
    let start = match continue_token.filter(|t| !t.is_empty()) {
        Some(t) => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.trim_end_matches('='))
                .map_err(|_| {
                    errors::bad_request("continue key is not valid: illegal base64 data")
                })?;
            let v: Value = serde_json::from_slice(&raw)
                .map_err(|_| errors::bad_request("continue key is not valid"))?;
            Some(v["start"].as_str().unwrap_or_default().to_string())
        }
        None => None,
    };
    // NUL sorts before every name character, so string order equals (namespace, name) order.
    let position = |k: &Key| format!("{}\u{0}{}\u{0}", k.namespace, k.name);
    let rest: Vec<(&Key, &Value)> = all
        .into_iter()
        .filter(|(k, _)| start.as_ref().is_none_or(|s| position(k) > *s))
        .collect();
    let take = limit
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX)
        .min(rest.len());
    let remaining = rest.len() - take;
    let continue_token = (remaining > 0).then(|| {
        let (k, _) = rest[take - 1];
        // Like the real server's, the start key is the last key plus NUL (the next page is
        // everything after it); it keeps the namespace so all-namespace lists page too.
        let tok = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": position(k)});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tok.to_string())
    });
    let items = rest[..take].iter().map(|(_, v)| (*v).clone()).collect();
    Ok(Page {
        items,
        continue_token,
        remaining,
    })
}

/// The metadata-only view of an object (`PartialObjectMetadata`).
pub(crate) fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"].clone(),
    })
}

/// Decodes `%XX` and `+` in a query component.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters (`?&fieldManager=x&force=true` included: empty pairs are skipped).
pub(crate) fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}
