//! Field sets: which leaf paths of an object a field manager owns, in the `fieldsV1` shape.
//!
//! A path is the list of raw `fieldsV1` keys leading to it (`["f:data", "f:mode"]`,
//! `["f:spec", "f:containers", "k:{\"name\":\"web\"}", "."]`), so encoding and decoding
//! `managedFields[].fieldsV1` is a plain tree walk. Lists are atomic except lists of objects
//! keyed by `name` (containers, env, volumes) or `type` (conditions), which the real server
//! treats as associative; `spec.selector` is atomic as on the real server.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

pub(crate) type FieldPath = Vec<String>;
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// Decodes a `fieldsV1` tree into its leaf paths (`{}` values; `"."` marks the node itself).
pub(crate) fn decode(tree: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    walk_decode(tree, &mut Vec::new(), &mut out);
    out
}

fn walk_decode(tree: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    if let Some(map) = tree.as_object() {
        for (k, v) in map {
            prefix.push(k.clone());
            if v.as_object().is_none_or(|m| m.is_empty()) {
                out.insert(prefix.clone());
            } else {
                walk_decode(v, prefix, out);
            }
            prefix.pop();
        }
    }
}

/// Encodes leaf paths as a `fieldsV1` tree.
pub(crate) fn encode(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for key in path {
            node = node
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

/// Maps that the real server records with a `"."` entry when an Update operation creates them
/// (string maps, unlike structs such as `spec`).
const STRING_MAPS: &[&str] = &[
    "labels",
    "annotations",
    "data",
    "stringData",
    "binaryData",
    "matchLabels",
    "nodeSelector",
];

fn is_atomic_map(prefix: &[String], key: &str) -> bool {
    key == "selector" && prefix.last().is_some_and(|p| p == "f:spec")
}

/// The key field of an associative list, if `items` is one.
fn list_key(key: &str, items: &[Value]) -> Option<&'static str> {
    if key == "versions" || items.is_empty() {
        // CRD versions are atomic on the real server even though the items have names.
        return None;
    }
    ["name", "type"].into_iter().find(|candidate| {
        items
            .iter()
            .all(|i| i.get(*candidate).is_some_and(Value::is_string))
    })
}

/// `k:{"name":"web"}` for an item of an associative list.
pub(crate) fn item_key(key_field: &str, item: &Value) -> String {
    let mut m = Map::new();
    m.insert(key_field.to_string(), item[key_field].clone());
    format!("k:{}", Value::Object(m))
}

/// Fields set by an applied configuration (apply semantics: no `"."` for maps).
pub(crate) fn applied_fields(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    collect(None, obj, &mut Vec::new(), &mut out, true);
    out
}

/// Fields an Update operation touched: present in `new` and absent or different in `old`.
pub(crate) fn changed_fields(old: Option<&Value>, new: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    collect(old, new, &mut Vec::new(), &mut out, false);
    out
}

/// Walks `new`; with `apply` every leaf is collected, otherwise only what differs from `old`.
fn collect(
    old: Option<&Value>,
    new: &Value,
    prefix: &mut FieldPath,
    out: &mut FieldSet,
    apply: bool,
) {
    let top = prefix.is_empty();
    let in_metadata = prefix.len() == 1 && prefix[0] == "f:metadata";
    match new {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                if top && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                // `metadata` itself is never owned, only labels/annotations/... inside it.
                if top && k == "metadata" && v.as_object().is_some_and(|m| m.is_empty()) {
                    continue;
                }
                if in_metadata
                    && !matches!(
                        k.as_str(),
                        "labels" | "annotations" | "finalizers" | "ownerReferences"
                    )
                {
                    continue;
                }
                if v.is_null() {
                    continue;
                }
                let child_old = old.and_then(|o| o.get(k));
                prefix.push(format!("f:{k}"));
                if is_atomic_map(&prefix[..prefix.len() - 1], k) {
                    if apply || child_old != Some(v) {
                        out.insert(prefix.clone());
                    }
                } else if let Value::Array(items) = v {
                    collect_list(k, child_old, items, prefix, out, apply);
                } else {
                    if !apply
                        && v.is_object()
                        && STRING_MAPS.contains(&k.as_str())
                        && child_old.is_none()
                        && v.as_object().is_some_and(|m| !m.is_empty())
                    {
                        prefix.push(".".into());
                        out.insert(prefix.clone());
                        prefix.pop();
                    }
                    collect(child_old, v, prefix, out, apply);
                }
                prefix.pop();
            }
        }
        _ => {
            if !top && (apply || old != Some(new)) {
                out.insert(prefix.clone());
            }
        }
    }
}

fn collect_list(
    key: &str,
    old: Option<&Value>,
    items: &[Value],
    prefix: &mut FieldPath,
    out: &mut FieldSet,
    apply: bool,
) {
    let Some(kf) = list_key(key, items) else {
        if apply || old != Some(&Value::Array(items.to_vec())) {
            out.insert(prefix.clone());
        }
        return;
    };
    if !apply && old.is_none() {
        prefix.push(".".into());
        out.insert(prefix.clone());
        prefix.pop();
    }
    let old_items = old.and_then(Value::as_array);
    for item in items {
        let old_item = old_items.and_then(|o| o.iter().find(|i| i.get(kf) == item.get(kf)));
        prefix.push(item_key(kf, item));
        if apply || old_item.is_none() {
            prefix.push(".".into());
            out.insert(prefix.clone());
            prefix.pop();
        }
        collect(old_item, item, prefix, out, apply);
        prefix.pop();
    }
}

/// The value at `path` in `obj`, if present (`"."` resolves to the node itself).
pub(crate) fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = obj;
    for key in path {
        if key == "." {
            continue;
        }
        node = step(node, key)?;
    }
    Some(node)
}

fn step<'a>(node: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(field) = key.strip_prefix("f:") {
        node.get(field)
    } else if let Some(json) = key.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(json).ok()?;
        node.as_array()?
            .iter()
            .find(|item| want.iter().all(|(k, v)| item.get(k) == Some(v)))
    } else {
        None
    }
}

/// Removes the value at `path` from `obj` (a list item for a `k:` path ending in `"."`).
pub(crate) fn remove_at(obj: &mut Value, path: &[String]) {
    let path: Vec<&String> = path.iter().filter(|k| *k != ".").collect();
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    for key in parents {
        let next = if let Some(field) = key.strip_prefix("f:") {
            node.get_mut(field)
        } else if let Some(json) = key.strip_prefix("k:") {
            let want: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
            node.as_array_mut().and_then(|items| {
                items
                    .iter_mut()
                    .find(|item| want.iter().all(|(k, v)| item.get(k) == Some(v)))
            })
        } else {
            None
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(map) = node.as_object_mut() {
            map.remove(field);
        }
    } else if let Some(json) = last.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
        if let Some(items) = node.as_array_mut() {
            items.retain(|item| !want.iter().all(|(k, v)| item.get(k) == Some(v)));
        }
    }
}

/// `.data.mode` / `.spec.containers[name="web"].image`: how conflicts name a path.
pub(crate) fn display(path: &[String]) -> String {
    let mut s = String::new();
    for key in path {
        if let Some(field) = key.strip_prefix("f:") {
            s.push('.');
            s.push_str(field);
        } else if let Some(json) = key.strip_prefix("k:") {
            let want: Map<String, Value> = serde_json::from_str(json).unwrap_or_default();
            let parts: Vec<String> = want.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    s
}

/// True when one path is the other or lies under it (ownership of an atomic parent covers
/// its children).
pub(crate) fn overlaps(a: &[String], b: &[String]) -> bool {
    let strip = |p: &[String]| -> Vec<String> { p.iter().filter(|k| *k != ".").cloned().collect() };
    let (a, b) = (strip(a), strip(b));
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// Recursive merge used for apply: maps merge, associative lists merge by key, other lists
/// and scalars are replaced. `null` in the patch deletes (merge-patch semantics).
pub(crate) fn merge(base: &mut Value, patch: &Value, key: &str) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) = b.get_mut(k) {
                    merge(existing, v, k);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (Value::Array(b), Value::Array(p)) => match list_key(key, p) {
            Some(kf) if list_key(key, b).is_some() || b.is_empty() => {
                for item in p {
                    match b.iter_mut().find(|i| i.get(kf) == item.get(kf)) {
                        Some(existing) => merge(existing, item, ""),
                        None => b.push(item.clone()),
                    }
                }
            }
            _ => *b = p.clone(),
        },
        (b, p) => *b = p.clone(),
    }
}

/// JSON merge patch (RFC 7386): objects merge, everything else (lists included) replaces.
pub(crate) fn merge_patch(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) = b.get_mut(k) {
                    merge_patch(existing, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}
