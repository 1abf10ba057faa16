//! LabelTransformer and AnnotationsTransformer: add key/value pairs to the maps the field specs reach
//! (commonLabels reach selectors and pod templates, `labels` without options only `metadata.labels`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldspec::{self, FieldSpec};
use super::Res;

/// Adds `pairs` to the maps at every spec (labels or annotations alike).
pub fn add(acc: &mut [Res], pairs: &BTreeMap<String, String>, specs: &[FieldSpec]) {
    if pairs.is_empty() {
        return;
    }
    for r in acc.iter_mut() {
        fieldspec::apply_all(r, specs, &mut |v| {
            if v.is_null() {
                *v = Value::Object(Map::new());
            }
            if let Some(map) = v.as_object_mut() {
                for (k, val) in pairs {
                    map.insert(k.clone(), Value::String(val.clone()));
                }
            }
        });
    }
}

/// kustomize writes every label and annotation value as a string (`happy: true` comes out `"true"`).
pub fn stringify_metadata(obj: &mut Value) {
    for field in ["labels", "annotations"] {
        if let Some(map) = obj
            .pointer_mut(&format!("/metadata/{field}"))
            .and_then(Value::as_object_mut)
        {
            for v in map.values_mut() {
                match v {
                    Value::Bool(b) => *v = Value::String(b.to_string()),
                    Value::Number(n) => *v = Value::String(n.to_string()),
                    _ => {}
                }
            }
        }
    }
}
