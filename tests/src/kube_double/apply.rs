//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! Apply merges the applied configuration into the live object, refuses to change a field
//! another manager owns unless forced (409 with `FieldManagerConflict` causes), and removes
//! fields this manager applied before, dropped now, and nobody else owns. Non-apply writes
//! (create, update, patch, controllers) are recorded as `Update` operations that take over
//! the fields they changed, as the real server does.

use serde_json::{json, Value};

use super::errors::{self, Failure};
use super::fields::{self, FieldPath, FieldSet};

/// One `managedFields` entry, decoded.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    fn same_slot(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

pub(crate) fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or_default().to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().map(str::to_string),
            fields: fields::decode(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes entries back: empty ones dropped, Apply entries first, then by time (the order
/// the real server shows).
pub(crate) fn set_entries(obj: &mut Value, mut list: Vec<Entry>) {
    list.retain(|e| !e.fields.is_empty());
    list.sort_by(|a, b| (a.operation != "Apply", &a.time).cmp(&(b.operation != "Apply", &b.time)));
    let encoded: Vec<Value> = list
        .iter()
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": fields::encode(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    let meta = obj["metadata"].as_object_mut().expect("metadata object");
    if encoded.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(encoded));
    }
}

/// Sets the time of one entry (after a write turned out not to be a no-op).
pub(crate) fn touch(obj: &mut Value, manager: &str, operation: &str, sub: Option<&str>, now: &str) {
    let mut list = entries(obj);
    for e in &mut list {
        if e.same_slot(manager, operation, sub) {
            e.time = now.to_string();
        }
    }
    set_entries(obj, list);
}

/// Drops owned paths that no longer exist in `obj`.
fn prune(list: &mut [Entry], obj: &Value) {
    for e in list.iter_mut() {
        e.fields.retain(|p| fields::value_at(obj, p).is_some());
    }
}

/// The part of an object a write through `subresource` may touch: only `status` through
/// `/status`, everything but `status` through the main resource of a type with a status
/// subresource.
pub(crate) fn view(obj: &Value, subresource: Option<&str>, has_status: bool) -> Value {
    let mut v = obj.clone();
    if let Some(map) = v.as_object_mut() {
        match subresource {
            Some("status") => map.retain(|k, _| k == "status"),
            _ if has_status => {
                map.remove("status");
            }
            _ => {}
        }
    }
    v
}

/// Records an Update operation by `manager` that turned `old` into `new` (both full objects;
/// `new`'s own managedFields are ignored, the live ones carry over).
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let mut list = old.map(entries).unwrap_or_default();
    let changed = fields::changed_fields(old, new);
    for e in &mut list {
        if !e.same_slot(manager, "Update", subresource) {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        match list
            .iter_mut()
            .find(|e| e.same_slot(manager, "Update", subresource))
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
            }
            None => list.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    prune(&mut list, new);
    set_entries(new, list);
}

/// A request to apply `applied` as `manager`.
pub(crate) struct Apply<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub subresource: Option<&'a str>,
    pub api_version: &'a str,
    pub has_status: bool,
    pub now: &'a str,
}

/// Computes the object after applying; `Err` is the 409 conflict answer. The applier's
/// entry keeps its old time, so an unchanged re-apply yields exactly the live object.
pub(crate) fn apply(live: Option<&Value>, applied: &Value, req: &Apply) -> Result<Value, Failure> {
    let applied_view = view(applied, req.subresource, req.has_status);
    let applied_set = fields::applied_fields(&applied_view);
    let mut list = live.map(entries).unwrap_or_default();
    let own = |e: &Entry| e.same_slot(req.manager, "Apply", req.subresource);

    let live_obj = live.cloned().unwrap_or(Value::Null);
    let mut conflicts: Vec<(String, String, FieldPath)> = Vec::new();
    for e in list.iter().filter(|e| !own(e)) {
        for p in applied_set
            .iter()
            .filter(|p| p.last().is_some_and(|k| k != "."))
        {
            let clash = e
                .fields
                .iter()
                .any(|q| q == p || (q.last().is_some_and(|k| k != ".") && fields::overlaps(p, q)));
            if clash && fields::value_at(&live_obj, p) != fields::value_at(&applied_view, p) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !req.force {
            return Err(conflict_failure(&conflicts));
        }
        for e in list.iter_mut().filter(|e| !own(e)) {
            e.fields.retain(|q| {
                !conflicts.iter().any(|(_, _, p)| {
                    p == q || (q.last().is_some_and(|k| k != ".") && fields::overlaps(p, q))
                })
            });
        }
    }

    let mut merged = live.cloned().unwrap_or_else(|| json!({}));
    fields::merge(&mut merged, &applied_view, "");

    // Fields this manager applied before and dropped now go away unless someone else owns them.
    let previous: FieldSet = list
        .iter()
        .find(|e| own(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.difference(&applied_set) {
        let owned_elsewhere = list.iter().filter(|e| !own(e)).any(|e| {
            e.fields.iter().any(|q| {
                let base: Vec<&String> = p.iter().filter(|k| *k != ".").collect();
                q.len() >= base.len() && q.iter().take(base.len()).eq(base.iter().copied())
            })
        });
        if !owned_elsewhere {
            fields::remove_at(&mut merged, p);
        }
    }

    match list.iter_mut().find(|e| own(e)) {
        Some(e) => {
            if e.fields != applied_set {
                e.time = req.now.to_string();
            }
            e.fields = applied_set;
        }
        None => list.push(Entry {
            manager: req.manager.to_string(),
            operation: "Apply".into(),
            api_version: req.api_version.to_string(),
            time: req.now.to_string(),
            subresource: req.subresource.map(str::to_string),
            fields: applied_set,
        }),
    }
    if merged.get("metadata").is_none() {
        merged["metadata"] = json!({});
    }
    prune(&mut list, &merged);
    set_entries(&mut merged, list);
    Ok(merged)
}

fn conflict_failure(conflicts: &[(String, String, FieldPath)]) -> Failure {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, v, p)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{m}\" using {v}"),
                "field": fields::display(p),
            })
        })
        .collect();
    let message = if conflicts.len() == 1 {
        let (m, v, p) = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with \"{m}\" using {v}: {}",
            fields::display(p)
        )
    } else {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(m, v, p)| format!("conflict with \"{m}\" using {v}: {}", fields::display(p)))
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    Failure::Status(
        409,
        errors::status(
            409,
            Some("Conflict"),
            &message,
            Some(json!({"causes": causes})),
        ),
    )
}
