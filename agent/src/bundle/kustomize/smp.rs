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

/// Definitions reduced to what patches need: per definition its `fields` (`ref`, `array`, `patch-merge-key`,
/// `patch-strategy`, `list-map-keys`) and the `gvk`s it describes.
#[derive(Debug)]
pub struct Schema {
    defs: Map<String, Value>,
    /// (group, kind) -> definition name.
    kinds: HashMap<(String, String), String>,
}

impl Schema {
    fn from_reduced(root: &Value) -> Schema {
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
    }

    /// A kustomization's `openapi` schema (OpenAPI v2 `definitions`, with `x-kubernetes-patch-merge-key`,
    /// `x-kubernetes-patch-strategy` and `x-kubernetes-group-version-kind`), reduced the same way.
    pub fn from_openapi(doc: &Value) -> Schema {
        let mut defs = Map::new();
        for (name, def) in doc
            .get("definitions")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            reduce(name, def, &mut defs);
        }
        let mut root = Map::new();
        root.insert("definitions".into(), Value::Object(defs));
        Schema::from_reduced(&Value::Object(root))
    }
}

/// Reduces one OpenAPI definition into `defs` under `name`; inline object properties become definitions of
/// their own (`name.field`).
fn reduce(name: &str, def: &Value, defs: &mut Map<String, Value>) {
    let reference = |v: &Value| {
        v.get("$ref")
            .and_then(Value::as_str)
            .map(|r| r.trim_start_matches("#/definitions/").to_string())
    };
    let mut fields = Map::new();
    for (field, prop) in def
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut f = Map::new();
        let items = prop.get("items");
        if prop.get("type").and_then(Value::as_str) == Some("array") {
            f.insert("array".into(), Value::Bool(true));
        }
        let inline = [Some(prop), items]
            .into_iter()
            .flatten()
            .find(|v| v.get("properties").is_some());
        let r = reference(prop)
            .or_else(|| items.and_then(reference))
            .or_else(|| {
                inline.map(|v| {
                    let child = format!("{name}.{field}");
                    reduce(&child, v, defs);
                    child
                })
            });
        if let Some(r) = r {
            f.insert("ref".into(), Value::String(r));
        }
        for (from, to) in [
            ("x-kubernetes-patch-merge-key", "patch-merge-key"),
            ("x-kubernetes-patch-strategy", "patch-strategy"),
            ("x-kubernetes-list-map-keys", "list-map-keys"),
        ] {
            if let Some(v) = prop.get(from) {
                f.insert(to.into(), v.clone());
            }
        }
        fields.insert(field.clone(), Value::Object(f));
    }
    let mut reduced = Map::new();
    reduced.insert("fields".into(), Value::Object(fields));
    if let Some(gvk) = def.get("x-kubernetes-group-version-kind") {
        reduced.insert("gvk".into(), gvk.clone());
    }
    defs.insert(name.to_string(), Value::Object(reduced));
}

fn schema() -> &'static Schema {
    static CELL: OnceLock<Schema> = OnceLock::new();
    CELL.get_or_init(|| {
        let root: Value = serde_json::from_str(SCHEMA).unwrap_or(Value::Null);
        Schema::from_reduced(&root)
    })
}

/// A node of the schema: the definition describing a map, if known, looked up in the kustomization's own
/// schema first, then in the API server's.
#[derive(Clone, Copy)]
struct Def<'a>(Option<&'a Value>, Option<&'a Schema>);

impl<'a> Def<'a> {
    fn field(self, name: &str) -> Option<&'a Value> {
        self.0?.get("fields")?.get(name)
    }
    fn child(self, name: &str) -> Def<'a> {
        let r = self
            .field(name)
            .and_then(|f| f.get("ref"))
            .and_then(Value::as_str);
        Def(r.and_then(|r| lookup(self.1, r)), self.1)
    }
    fn known(self) -> bool {
        self.0.is_some()
    }
}

fn lookup<'a>(custom: Option<&'a Schema>, name: &str) -> Option<&'a Value> {
    custom
        .and_then(|c| c.defs.get(name))
        .or_else(|| schema().defs.get(name))
}

/// Merges `patch` into `target`, which is an object of kind `kind` in API group `group`; a kustomization's own
/// schema (`custom`) wins over the API server's.
pub fn merge_with(
    target: &mut Value,
    patch: &Value,
    group: &str,
    kind: &str,
    custom: Option<&Schema>,
) {
    let key = (group.to_string(), kind.to_string());
    let def = custom
        .and_then(|c| c.kinds.get(&key).and_then(|n| c.defs.get(n)))
        .or_else(|| {
            let s = schema();
            s.kinds.get(&key).and_then(|n| lookup(custom, n))
        });
    merge_value(target, patch, Def(def, custom));
}

fn merge_value(target: &mut Value, patch: &Value, def: Def<'_>) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => merge_map(t, p, def),
        _ => *target = strip(patch),
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>, def: Def<'_>) {
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

fn merge_list(target: &mut Vec<Value>, patch: &[Value], parent: Def<'_>, field: &str) {
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
    child: Def<'_>,
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
