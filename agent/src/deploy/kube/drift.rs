//! Cheap drift detection: one metadata-only list per kind, by our owner label, compared with what our last apply
//! returned. Status writes move `resourceVersion` but not `metadata.generation`, so kinds with a generation are
//! compared by generation; other managers' writes show in `managedFields`; an object without our owner label (or gone)
//! is missing from the list. Only what differs is re-applied.

use std::collections::{BTreeMap, HashMap};

use http::Method;
use serde_json::Value;

use super::client::{query_escape, Resource, METADATA_LIST};
use super::plan::ObjectRef;
use super::{Entry, KubeError, KubeTarget};

/// What the drift check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Drift {
    None,
    /// The inventory does not describe this revision (first run, lost state, a failed apply): apply everything.
    All,
    Objects(Vec<Drifted>),
}

/// One drifted object, and whose hand moved it.
#[derive(Debug, Clone, PartialEq)]
pub struct Drifted {
    pub r: ObjectRef,
    pub why: &'static str,
    /// Notes naming each other manager that wrote to it since our apply, and the fields it now owns.
    pub notes: Vec<String>,
}

/// Other managers' entries in `managedFields` for the object itself; status writes are left out, because
/// controllers write status all the time and it is not ours.
fn other_hands<'a>(
    meta: Option<&'a Value>,
    field_manager: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    meta.and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |f| f.get("manager").and_then(Value::as_str) != Some(field_manager))
        .filter(|f| {
            f.get("subresource")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        })
}

/// One managedFields entry as a comparable `manager|operation|time` string.
fn hand(f: &Value) -> String {
    let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("");
    format!("{}|{}|{}", s("manager"), s("operation"), s("time"))
}

/// Other managers' writes to the object itself, as comparable strings.
pub fn foreign_hands(meta: Option<&Value>, field_manager: &str) -> Vec<String> {
    let mut out: Vec<String> = other_hands(meta, field_manager).map(hand).collect();
    out.sort();
    out
}

/// Notes for the managers that wrote to an object since our apply: their fields are about to be taken back.
pub fn new_hands(entry: &Entry, meta: &Value, field_manager: &str) -> Vec<String> {
    other_hands(Some(meta), field_manager)
        .filter(|f| !entry.foreign.contains(&hand(f)))
        .map(|f| {
            let manager = f.get("manager").and_then(Value::as_str).unwrap_or("?");
            let mut fields = Vec::new();
            if let Some(v1) = f.get("fieldsV1") {
                leaf_fields(v1, String::new(), &mut fields);
            }
            let shown = fields
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let more = match fields.len().saturating_sub(5) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            format!(
                "{}: took back {shown}{more} from manager {manager:?}",
                entry.r
            )
        })
        .collect()
}

/// The leaf paths of a managedFields `fieldsV1` set, as `.data.key` and `.spec.containers[name=app].image`.
fn leaf_fields(set: &Value, prefix: String, out: &mut Vec<String>) {
    let Some(map) = set.as_object() else {
        return;
    };
    let children: Vec<_> = map.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix);
        }
        return;
    }
    for (key, child) in children {
        let path = if let Some(name) = key.strip_prefix("f:") {
            format!("{prefix}.{name}")
        } else if let Some(k) = key.strip_prefix("k:") {
            let k: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            let inner = k
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(a, b)| {
                            format!(
                                "{a}={}",
                                b.as_str().map(str::to_string).unwrap_or(b.to_string())
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            format!("{prefix}[{inner}]")
        } else if let Some(v) = key.strip_prefix("v:") {
            format!("{prefix}[{v}]")
        } else {
            format!("{prefix}.{key}")
        };
        leaf_fields(child, path, out);
    }
}

/// Why a live object differs from our record, or `None` when it does not.
pub fn compare(entry: &Entry, live: Option<&Value>, field_manager: &str) -> Option<&'static str> {
    let Some(meta) = live else {
        return Some("missing");
    };
    if entry.create_only {
        return None;
    }
    let generation = meta.get("generation").and_then(Value::as_i64);
    match (entry.generation, generation) {
        (Some(ours), Some(now)) if ours != now => return Some("spec changed"),
        (None, _) => {
            let rv = meta.get("resourceVersion").and_then(Value::as_str);
            if rv != entry.resource_version.as_deref() {
                return Some("changed");
            }
        }
        _ => {}
    }
    if foreign_hands(Some(meta), field_manager) != entry.foreign {
        return Some("written by another manager");
    }
    None
}

impl KubeTarget {
    /// Compares the cluster with the inventory of `revision`.
    pub async fn drifted(&self, source: &str, revision: &str) -> Result<Drift, KubeError> {
        let Some(inventory) = self.inventory(source)? else {
            return Ok(Drift::All);
        };
        if inventory.incomplete || inventory.revision.as_deref() != Some(revision) {
            return Ok(Drift::All);
        }
        let mut kinds: BTreeMap<(String, String, String), Vec<&Entry>> = BTreeMap::new();
        for e in &inventory.entries {
            kinds
                .entry((e.r.group.clone(), e.r.version.clone(), e.plural.clone()))
                .or_default()
                .push(e);
        }
        let mut drifted = Vec::new();
        for entries in kinds.values() {
            let res = entries[0].resource();
            // One namespace: list only there, which needs less RBAC than a cluster-wide list.
            let mut namespaces: Vec<Option<&str>> =
                entries.iter().map(|e| e.r.namespace.as_deref()).collect();
            namespaces.dedup();
            let scope = if namespaces.len() == 1 {
                namespaces[0]
            } else {
                None
            };
            let live: HashMap<(String, String), Value> = self
                .list_owned(&res, scope)
                .await?
                .into_iter()
                .map(|(meta, key)| (key, meta))
                .collect();
            for e in entries {
                let key = (e.r.namespace.clone().unwrap_or_default(), e.r.name.clone());
                let meta = live.get(&key);
                if let Some(why) = compare(e, meta, &self.cluster.field_manager) {
                    tracing::info!(source, object = %e.r, why, "drift");
                    drifted.push(Drifted {
                        r: e.r.clone(),
                        why,
                        notes: meta
                            .map(|m| new_hands(e, m, &self.cluster.field_manager))
                            .unwrap_or_default(),
                    });
                }
            }
        }
        Ok(if drifted.is_empty() {
            Drift::None
        } else {
            Drift::Objects(drifted)
        })
    }

    /// The metadata of every object of one kind carrying our owner label, keyed by (namespace, name).
    pub(super) async fn list_owned(
        &self,
        res: &Resource,
        namespace: Option<&str>,
    ) -> Result<Vec<(Value, (String, String))>, KubeError> {
        self.list_labelled(&self.settings.owner.selector(), res, namespace)
            .await
    }

    /// The metadata of every object of one kind matching a label selector, keyed by (namespace, name).
    pub(super) async fn list_labelled(
        &self,
        selector: &str,
        res: &Resource,
        namespace: Option<&str>,
    ) -> Result<Vec<(Value, (String, String))>, KubeError> {
        let selector = query_escape(selector);
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut path = format!(
                "{}?labelSelector={selector}&limit=10000",
                res.collection(namespace)
            );
            if let Some(c) = &next {
                path.push_str("&continue=");
                path.push_str(&query_escape(c));
            }
            let answer = self
                .cluster
                .request(Method::GET, &path, None, Some(METADATA_LIST), None)
                .await
                .map_err(|e| match e {
                    Ok(f) => KubeError::List {
                        plural: res.plural.clone(),
                        message: f.describe(),
                    },
                    Err(e) => e,
                })?;
            for item in answer
                .body
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(meta) = item.get("metadata") else {
                    continue;
                };
                let s = |k: &str| {
                    meta.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let key = (s("namespace"), s("name"));
                out.push((meta.clone(), key));
            }
            next = answer
                .body
                .pointer("/metadata/continue")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .map(str::to_string);
            if next.is_none() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(generation: Option<i64>, rv: &str) -> Entry {
        Entry {
            r: ObjectRef {
                group: "apps".into(),
                version: "v1".into(),
                kind: "Deployment".into(),
                namespace: Some("demo".into()),
                name: "web".into(),
            },
            plural: "deployments".into(),
            namespaced: true,
            resource_version: Some(rv.into()),
            generation,
            foreign: Vec::new(),
            create_only: false,
            created_by: None,
        }
    }

    #[test]
    fn status_writes_are_not_drift_but_spec_and_other_managers_are() {
        let e = entry(Some(1), "100");
        // The controller wrote status: resourceVersion moved, generation did not.
        let status_only = json!({"generation": 1, "resourceVersion": "105", "managedFields": [
            {"manager": "outpost", "operation": "Apply", "time": "t1"},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "time": "t2"}]});
        assert_eq!(compare(&e, Some(&status_only), "outpost"), None);
        let spec = json!({"generation": 2, "resourceVersion": "106"});
        assert_eq!(compare(&e, Some(&spec), "outpost"), Some("spec changed"));
        let labels = json!({"generation": 1, "resourceVersion": "107", "managedFields": [
            {"manager": "kubectl-edit", "operation": "Update", "time": "t3"}]});
        assert_eq!(
            compare(&e, Some(&labels), "outpost"),
            Some("written by another manager")
        );
        assert_eq!(compare(&e, None, "outpost"), Some("missing"));
    }

    #[test]
    fn new_hands_name_the_manager_and_its_fields() {
        let mut e = entry(None, "7");
        e.r.kind = "ConfigMap".into();
        e.foreign = vec!["old|Update|t0".into()];
        let meta = json!({"managedFields": [
            {"manager": "outpost", "operation": "Apply", "time": "t1", "fieldsV1": {"f:data": {"f:a": {}}}},
            {"manager": "old", "operation": "Update", "time": "t0", "fieldsV1": {"f:data": {"f:z": {}}}},
            {"manager": "kubectl-edit", "operation": "Update", "time": "t2",
             "fieldsV1": {"f:data": {"f:version": {}}, "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}}}}}}]});
        assert_eq!(
            new_hands(&e, &meta, "outpost"),
            vec!["ConfigMap/demo/web: took back .data.version, .spec.containers[name=app].image from manager \"kubectl-edit\"".to_string()]
        );
    }

    #[test]
    fn kinds_without_generation_compare_resource_versions() {
        let mut e = entry(None, "7");
        e.r.kind = "ConfigMap".into();
        assert_eq!(
            compare(&e, Some(&json!({"resourceVersion": "7"})), "outpost"),
            None
        );
        assert_eq!(
            compare(&e, Some(&json!({"resourceVersion": "8"})), "outpost"),
            Some("changed")
        );
        e.create_only = true;
        assert_eq!(
            compare(&e, Some(&json!({"resourceVersion": "8"})), "outpost"),
            None
        );
    }
}
