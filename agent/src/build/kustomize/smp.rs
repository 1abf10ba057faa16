//! Strategic merge patches, as kustomize applies them: maps merge, lists of built-in kinds merge by the key the
//! API server publishes (containers by `name`, ports by `containerPort`, ...), other lists are replaced, and the
//! directives `$patch: delete | replace`, `$retainKeys`, `$deleteFromPrimitiveList` are honoured.
//!
//! Merge keys come from `k8s-merge-keys-v1.32.json`, the API server's OpenAPI reduced to what patches need. Lists
//! of kinds it does not describe (custom resources) are replaced whole, as kustomize does.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

const SCHEMA: &str = include_str!("k8s-merge-keys-v1.32.json");

struct Schema {
    defs: Map<String, Value>,
    /// (group, kind) -> definition name.
    kinds: HashMap<(String, String), String>,
}

fn schema() -> &'static Schema {
    static CELL: OnceLock<Schema> = OnceLock::new();
    CELL.get_or_init(|| {
        let root: Value = serde_json::from_str(SCHEMA).unwrap_or(Value::Null);
        let defs = root
            .get("definitions")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut kinds = HashMap::new();
        for (name, def) in &defs {
            for gvk in def
                .get("gvk")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let g = gvk.get("group").and_then(Value::as_str).unwrap_or("");
                let k = gvk.get("kind").and_then(Value::as_str).unwrap_or("");
                kinds
                    .entry((g.to_string(), k.to_string()))
                    .or_insert_with(|| name.clone());
            }
        }
        Schema { defs, kinds }
    })
}

/// A node of the schema: the definition describing a map, if known.
#[derive(Clone, Copy)]
struct Def(Option<&'static Value>);

impl Def {
    fn field(self, name: &str) -> Option<&'static Value> {
        self.0?.get("fields")?.get(name)
    }
    fn child(self, name: &str) -> Def {
        let r = self
            .field(name)
            .and_then(|f| f.get("ref"))
            .and_then(Value::as_str);
        Def(r.and_then(|r| schema().defs.get(r)))
    }
    fn known(self) -> bool {
        self.0.is_some()
    }
}

/// Merges `patch` into `target`, which is an object of kind `kind` in API group `group`.
pub fn merge(target: &mut Value, patch: &Value, group: &str, kind: &str) {
    let s = schema();
    let def = s
        .kinds
        .get(&(group.to_string(), kind.to_string()))
        .and_then(|n| s.defs.get(n));
    merge_value(target, patch, Def(def));
}

fn merge_value(target: &mut Value, patch: &Value, def: Def) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => merge_map(t, p, def),
        _ => *target = strip(patch),
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>, def: Def) {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip(&Value::Object(patch.clone()))
            .as_object()
            .cloned()
            .unwrap_or_default();
        return;
    }
    for (key, pv) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(gone)) = (target.get_mut(field), pv.as_array())
            {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            target.remove(key);
            continue;
        }
        if pv.get("$patch").and_then(Value::as_str) == Some("delete") {
            target.remove(key);
            continue;
        }
        let child = def.child(key);
        match (target.get_mut(key), pv) {
            (Some(Value::Object(t)), Value::Object(p)) => merge_map(t, p, child),
            (Some(Value::Array(t)), Value::Array(p)) => merge_list(t, p, def, key),
            _ => {
                target.insert(key.clone(), strip(pv));
            }
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
}

fn merge_list(target: &mut Vec<Value>, patch: &[Value], parent: Def, field: &str) {
    let directive = |v: &Value| v.get("$patch").and_then(Value::as_str).map(str::to_string);
    if patch
        .iter()
        .any(|p| directive(p).as_deref() == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|p| directive(p).as_deref() != Some("replace"))
            .map(strip)
            .collect();
        return;
    }
    let spec = parent.field(field);
    let strategy = spec
        .and_then(|s| s.get("patch-strategy"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !parent.known() || !strategy.split(',').any(|s| s == "merge") {
        *target = patch.iter().map(strip).collect();
        return;
    }
    let key = spec
        .and_then(|s| s.get("patch-merge-key"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let child = parent.child(field);
    let Some(key) = key else {
        // A merged list of scalars: a union, in order.
        for p in patch {
            if !target.contains(p) {
                target.push(p.clone());
            }
        }
        return;
    };
    let keys: Vec<String> = spec
        .and_then(|s| s.get("list-map-keys"))
        .and_then(Value::as_array)
        .map(|k| {
            k.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if keys.len() > 1 {
        merge_multi_key(target, patch, &key, &keys, child);
        return;
    }
    // kustomize puts the patch's elements first, in the patch's order, then the target's other elements.
    let mut rest: Vec<Option<Value>> = std::mem::take(target).into_iter().map(Some).collect();
    let mut merged = Vec::new();
    for p in patch {
        let id = p.get(&key);
        let existing = rest
            .iter()
            .position(|t| id.is_some() && t.as_ref().and_then(|t| t.get(&key)) == id);
        let old = existing.and_then(|i| rest[i].take());
        match (old, directive(p).as_deref()) {
            (_, Some("delete")) => {}
            (Some(mut old), _) => {
                merge_value(&mut old, p, child);
                merged.push(old);
            }
            (None, _) => merged.push(strip(p)),
        }
    }
    merged.extend(rest.into_iter().flatten());
    *target = merged;
}

/// Lists keyed by several fields (container ports: `containerPort` and `protocol`), as kustomize merges them
/// (measured with kubectl 1.32): an element equal on every key merges in place; one that shares the merge key but
/// differs on another key is dropped; new elements go first, in the patch's order; `$patch: delete` has no
/// effect on such lists in kustomize, so it has none here either.
fn merge_multi_key(
    target: &mut Vec<Value>,
    patch: &[Value],
    key: &str,
    keys: &[String],
    child: Def,
) {
    let mut new = Vec::new();
    for p in patch {
        let delete = p.get("$patch").and_then(Value::as_str) == Some("delete");
        let same = |t: &Value| keys.iter().all(|k| t.get(k) == p.get(k));
        if delete {
            continue;
        }
        if let Some(i) = target.iter().position(same) {
            merge_value(&mut target[i], p, child);
        } else if !target
            .iter()
            .any(|t| t.get(key).is_some() && t.get(key) == p.get(key))
        {
            new.push(strip(p));
        }
    }
    new.append(target);
    *target = new;
}

/// A patch value without directives, as it lands in the output.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip).collect()),
        other => other.clone(),
    }
}
