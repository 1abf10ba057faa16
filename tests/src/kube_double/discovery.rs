//! Discovery: `/version`, `/api`, `/apis`, group-version resource lists (legacy and
//! aggregated), and the registry of resource types the double serves.
//!
//! The built-in lists are the ones recorded from kube-apiserver v1.32.6 (loaded from the
//! transcripts at runtime, so the double advertises exactly what the real server did);
//! established CRDs are appended the way the real server shows them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

/// One served resource type (a built-in from the recording, or a CRD's version).
#[derive(Clone, Debug)]
pub(crate) struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub subresources: Vec<String>,
    pub custom: bool,
    /// The CRD's `openAPIV3Schema` for custom resources.
    pub schema: Option<Value>,
}

/// Kinds the real server gives `metadata.generation` besides all custom resources.
const GENERATION_KINDS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "CustomResourceDefinition",
    "Ingress",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "PriorityLevelConfiguration",
    "FlowSchema",
];

impl ResourceType {
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    pub(crate) fn has_status(&self) -> bool {
        self.subresources.iter().any(|s| s == "status")
    }
    pub(crate) fn has_generation(&self) -> bool {
        self.custom || GENERATION_KINDS.contains(&self.kind.as_str())
    }
}

/// The recorded discovery documents plus the built-in registry derived from them.
pub(crate) struct Discovery {
    version: Value,
    api: Value,
    groups: Value,
    aggregated_apis: Value,
    aggregated_api: Value,
    /// APIResourceList per group-version (`v1`, `apps/v1`).
    lists: BTreeMap<String, Value>,
    pub builtin: Vec<ResourceType>,
}

/// Where the transcripts live: `OUTPOST_KUBE_TRANSCRIPTS`, else `tests/fixtures/kube-transcripts`, the copy of
/// the recorded exchanges kept in the repository so that a clean clone tests without anything beside it.
pub fn transcripts_dir() -> PathBuf {
    match std::env::var_os("OUTPOST_KUBE_TRANSCRIPTS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/kube-transcripts"
        )),
    }
}

fn load(name: &str) -> Value {
    let path = transcripts_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "read {} (set OUTPOST_KUBE_TRANSCRIPTS): {e}",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

const AGGREGATED: &str = "apidiscovery.k8s.io";

/// True when the Accept header asks for aggregated discovery (`as=APIGroupDiscoveryList`).
pub(crate) fn wants_aggregated(accept: &str) -> bool {
    accept.contains("as=APIGroupDiscoveryList") && accept.contains(AGGREGATED)
}

pub(crate) const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

impl Discovery {
    pub(crate) fn load() -> Discovery {
        let mut d = Discovery {
            version: Value::Null,
            api: Value::Null,
            groups: Value::Null,
            aggregated_apis: Value::Null,
            aggregated_api: Value::Null,
            lists: BTreeMap::new(),
            builtin: Vec::new(),
        };
        for file in ["discovery.json", "discovery-groupversions.json"] {
            let doc = load(file);
            for ex in doc["exchanges"].as_array().into_iter().flatten() {
                let path = ex["request"]["path"].as_str().unwrap_or_default();
                let accept = ex["request"]["headers"]["Accept"].as_str().unwrap_or("");
                let body = ex["response"]["body"].clone();
                match (path, wants_aggregated(accept)) {
                    ("/version", _) => d.version = body,
                    ("/api", false) => d.api = body,
                    ("/apis", false) => d.groups = body,
                    ("/apis", true) => d.aggregated_apis = body,
                    ("/api", true) => d.aggregated_api = body,
                    _ => {
                        if let Some(gv) = body["groupVersion"].as_str() {
                            d.lists.insert(gv.to_string(), body);
                        }
                    }
                }
            }
        }
        for (gv, list) in &d.lists {
            let (group, version) = match gv.split_once('/') {
                Some((g, v)) => (g.to_string(), v.to_string()),
                None => (String::new(), gv.clone()),
            };
            let resources = list["resources"].as_array().cloned().unwrap_or_default();
            for r in &resources {
                let name = r["name"].as_str().unwrap_or_default();
                if name.contains('/') {
                    continue;
                }
                let subresources = resources
                    .iter()
                    .filter_map(|s| s["name"].as_str()?.strip_prefix(&format!("{name}/")))
                    .map(str::to_string)
                    .collect();
                d.builtin.push(ResourceType {
                    group: group.clone(),
                    version: version.clone(),
                    plural: name.to_string(),
                    singular: r["singularName"].as_str().unwrap_or_default().to_string(),
                    kind: r["kind"].as_str().unwrap_or_default().to_string(),
                    namespaced: r["namespaced"].as_bool().unwrap_or(false),
                    subresources,
                    custom: false,
                    schema: None,
                });
            }
        }
        d
    }

    pub(crate) fn version(&self) -> Value {
        self.version.clone()
    }

    pub(crate) fn api(&self, server_address: &str, aggregated: bool) -> Value {
        if aggregated {
            return self.aggregated_api.clone();
        }
        let mut api = self.api.clone();
        api["serverAddressByClientCIDRs"] =
            json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]);
        api
    }

    /// `/apis`: the recorded groups followed by one entry per established CRD group.
    pub(crate) fn apis(&self, custom: &[ResourceType], aggregated: bool) -> Value {
        let mut doc = if aggregated {
            self.aggregated_apis.clone()
        } else {
            self.groups.clone()
        };
        for (group, types) in by_group(custom) {
            let versions: Vec<String> = dedup(types.iter().map(|t| t.version.clone()));
            if aggregated {
                let vs: Vec<Value> = versions
                    .iter()
                    .map(|v| {
                        let resources: Vec<Value> = types
                            .iter()
                            .filter(|t| &t.version == v)
                            .map(aggregated_resource)
                            .collect();
                        json!({"version": v, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                push(
                    &mut doc["items"],
                    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": vs}),
                );
            } else {
                push(&mut doc["groups"], group_entry(&group, &versions));
            }
        }
        doc
    }

    /// `/apis/{group}` (APIGroup), for built-in and custom groups.
    pub(crate) fn group(&self, group: &str, custom: &[ResourceType]) -> Option<Value> {
        let builtin = self.groups["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["name"] == group)
            .cloned();
        let entry = builtin.or_else(|| {
            let versions = dedup(
                custom
                    .iter()
                    .filter(|t| t.group == group)
                    .map(|t| t.version.clone()),
            );
            (!versions.is_empty()).then(|| group_entry(group, &versions))
        })?;
        let mut out = json!({"kind": "APIGroup", "apiVersion": "v1"});
        for (k, v) in entry.as_object()? {
            out[k] = v.clone();
        }
        Some(out)
    }

    /// `/api/v1` or `/apis/{group}/{version}`.
    pub(crate) fn resource_list(&self, gv: &str, custom: &[ResourceType]) -> Option<Value> {
        if let Some(list) = self.lists.get(gv) {
            return Some(list.clone());
        }
        let types: Vec<&ResourceType> = custom.iter().filter(|t| t.api_version() == gv).collect();
        if types.is_empty() {
            return None;
        }
        let mut resources = Vec::new();
        for t in types {
            resources.push(json!({
                "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
                "kind": t.kind, "verbs": CR_VERBS,
            }));
            for sub in &t.subresources {
                resources.push(json!({
                    "name": format!("{}/{sub}", t.plural), "singularName": "",
                    "namespaced": t.namespaced, "kind": t.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        Some(json!({
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources,
        }))
    }
}

const CR_VERBS: [&str; 8] = [
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];

fn aggregated_resource(t: &&ResourceType) -> Value {
    let mut r = json!({
        "resource": t.plural,
        "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": CR_VERBS,
    });
    if t.has_status() {
        r["subresources"] = json!([{
            "subresource": "status",
            "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
            "verbs": ["get", "patch", "update"],
        }]);
    }
    r
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0].clone()})
}

fn by_group(types: &[ResourceType]) -> BTreeMap<String, Vec<&ResourceType>> {
    let mut m: BTreeMap<String, Vec<&ResourceType>> = BTreeMap::new();
    for t in types {
        m.entry(t.group.clone()).or_default().push(t);
    }
    m
}

fn dedup(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in it {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn push(list: &mut Value, item: Value) {
    if let Some(a) = list.as_array_mut() {
        a.push(item);
    }
}

/// `/openapi/v3`: the index of per-group-version documents. kubectl reads it to learn that
/// the server validates fields itself (`fieldValidation`), which spares it the client-side
/// schema validation the double cannot offer.
pub(crate) fn openapi_root(types: &[&ResourceType]) -> Value {
    let mut paths = serde_json::Map::new();
    for t in types {
        let gv = openapi_gv_path(t);
        let url = format!("/openapi/v3/{gv}?hash=0");
        paths.insert(gv, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

fn openapi_gv_path(t: &ResourceType) -> String {
    if t.group.is_empty() {
        format!("api/{}", t.version)
    } else {
        format!("apis/{}/{}", t.group, t.version)
    }
}

/// `/openapi/v3/{api/v1|apis/g/v}`: a minimal document with one PATCH operation per
/// resource declaring the `fieldValidation` parameter (no schemas).
pub(crate) fn openapi_gv(gv_path: &str, types: &[&ResourceType]) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for t in types.iter().filter(|t| openapi_gv_path(t) == gv_path) {
        let scope = if t.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let path = format!("/{gv_path}{scope}/{}/{{name}}", t.plural);
        let op = json!({
            "operationId": format!("patch{}", t.kind),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
            ],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(path, json!({"patch": op}));
    }
    (!paths.is_empty()).then(|| {
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.32.6"},
            "paths": paths,
            "components": {"schemas": {}},
        })
    })
}
