//! Validation the way kube-apiserver v1.32 reports it.
//!
//! Three families, because the real server answers them differently: structural
//! ("typed patch") errors of server-side apply are 500 without a reason (an upstream bug the
//! transcripts record); value errors (names, required selectors, CRD `minimum`, immutable
//! fields) are 422 Invalid with causes; a body that names another object is 400.

use serde_json::Value;

use super::discovery::ResourceType;
use super::errors::{self, Cause, Res};

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// The name in the message/details subject: `Deployment.apps`, `ConfigMap`.
fn invalid(ty: &ResourceType, name: &str, causes: Vec<Cause>) -> errors::Failure {
    errors::invalid(&ty.kind, &ty.group, name, causes)
}

/// 422 for a name that is not a DNS-1123 subdomain (label for namespaces).
pub(crate) fn name(ty: &ResourceType, name: &str) -> Res<()> {
    let (ok, why) = if ty.kind == "Namespace" {
        (is_label(name), LABEL_MSG)
    } else {
        (is_subdomain(name), SUBDOMAIN_MSG)
    };
    if ok {
        return Ok(());
    }
    let cause = Cause::invalid("metadata.name", &format!("\"{name}\""), why);
    Err(invalid(ty, name, vec![cause]))
}

/// 400 when the body names another object or namespace than the URL.
pub(crate) fn body_matches_url(obj: &Value, url_name: &str, url_ns: Option<&str>) -> Res<()> {
    if let Some(body_name) = obj["metadata"]["name"].as_str() {
        if body_name != url_name {
            return Err(errors::bad_request(&format!(
                "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
            )));
        }
    }
    if let (Some(ns), Some(body_ns)) = (url_ns, obj["metadata"]["namespace"].as_str()) {
        if ns != body_ns {
            return Err(errors::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

/// Top-level fields of built-in kinds besides apiVersion/kind/metadata; kinds not listed
/// take `spec` and `status`.
fn builtin_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "ConfigMap" => &["data", "binaryData", "immutable"],
        "Secret" => &["data", "stringData", "type", "immutable"],
        "ServiceAccount" => &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        "Role" | "ClusterRole" => &["rules", "aggregationRule"],
        "RoleBinding" | "ClusterRoleBinding" => &["subjects", "roleRef"],
        "Endpoints" => &["subsets"],
        _ => &["spec", "status"],
    }
}

const METADATA_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "selfLink",
];

fn go_value(v: &Value) -> String {
    format!("&value.valueUnstructured{{Value:{v}}}")
}

/// The structural check server-side apply makes before anything else: 500 with
/// `failed to create typed patch object (...)` like the real server.
pub(crate) fn typed_patch(ty: &ResourceType, ns: &str, name: &str, obj: &Value) -> Res<()> {
    let fail = |detail: String| {
        let who = if ty.namespaced {
            format!("{ns}/{name}")
        } else {
            name.to_string()
        };
        let gv = format!("{}/{}", ty.group, ty.version);
        Err(errors::internal(&format!(
            "failed to create typed patch object ({who}; {gv}, Kind={}): {detail}",
            ty.kind
        )))
    };
    let Some(map) = obj.as_object() else {
        return fail("expected map".into());
    };
    if let Some(meta) = map.get("metadata").and_then(Value::as_object) {
        for (k, v) in meta {
            if !METADATA_FIELDS.contains(&k.as_str()) {
                return fail(format!(".metadata.{k}: field not declared in schema"));
            }
            if k == "labels" || k == "annotations" {
                for (lk, lv) in v.as_object().into_iter().flatten() {
                    if !lv.is_string() && !lv.is_null() {
                        return fail(format!(
                            ".metadata.{k}.{lk}: expected string, got {}",
                            go_value(lv)
                        ));
                    }
                }
            }
        }
    }
    if let Some(schema) = &ty.schema {
        for (k, v) in map {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match schema["properties"].get(k) {
                Some(s) => schema_types(s, v, &format!(".{k}")).or_else(fail)?,
                None if preserves_unknown(schema) => {}
                None => return fail(format!(".{k}: field not declared in schema")),
            }
        }
        return Ok(());
    }
    if ty.custom {
        return Ok(());
    }
    let allowed = builtin_fields(&ty.kind);
    for (k, v) in map {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if !allowed.contains(&k.as_str()) {
            return fail(format!(".{k}: field not declared in schema"));
        }
        if matches!(ty.kind.as_str(), "ConfigMap" | "Secret") && (k == "data" || k == "stringData")
        {
            for (dk, dv) in v.as_object().into_iter().flatten() {
                if !dv.is_string() && !dv.is_null() {
                    return fail(format!(".{k}.{dk}: expected string, got {}", go_value(dv)));
                }
            }
        }
    }
    Ok(())
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
}

/// Structural types of a CRD schema (errors are the typed-patch detail text).
fn schema_types(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    let ok = match schema["type"].as_str() {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") | Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !ok {
        let want = match schema["type"].as_str() {
            Some("integer") | Some("number") => "numeric (int or float)",
            Some("object") => "map",
            Some("array") => "list",
            Some(t) => t,
            None => "value",
        };
        let got = match v {
            Value::String(_) => "string".to_string(),
            other => go_value(other),
        };
        return Err(format!("{path}: expected {want}, got {got}"));
    }
    if let Some(map) = v.as_object() {
        let props = schema["properties"].as_object();
        for (k, child) in map {
            match props.and_then(|p| p.get(k)) {
                Some(s) => schema_types(s, child, &format!("{path}.{k}"))?,
                None if preserves_unknown(schema) || props.is_none() => {
                    if let Some(extra) =
                        schema.get("additionalProperties").filter(|a| a.is_object())
                    {
                        schema_types(extra, child, &format!("{path}.{k}"))?;
                    }
                }
                None => return Err(format!("{path}.{k}: field not declared in schema")),
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), v.as_array()) {
        for (i, child) in list.iter().enumerate() {
            schema_types(items, child, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

/// Value validation after the object is assembled: 422 Invalid with causes.
pub(crate) fn values(ty: &ResourceType, name: &str, obj: &Value) -> Res<()> {
    let mut causes = Vec::new();
    if let Some(schema) = &ty.schema {
        for (k, v) in obj.as_object().into_iter().flatten() {
            if let Some(s) = schema["properties"].get(k) {
                schema_values(s, v, k, &mut causes);
            }
        }
        for req in schema["required"].as_array().into_iter().flatten() {
            if let Some(r) = req.as_str().filter(|r| obj.get(*r).is_none()) {
                causes.push(Cause::required(r));
            }
        }
    }
    if matches!(
        ty.kind.as_str(),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
    ) {
        let labels = &obj["spec"]["template"]["metadata"]["labels"];
        match obj["spec"].get("selector") {
            None | Some(Value::Null) => {
                causes.push(Cause::required("spec.selector"));
                causes.push(labels_mismatch(labels));
            }
            Some(sel) => {
                let matches = sel["matchLabels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .all(|(k, v)| labels.get(k) == Some(v));
                if !matches {
                    causes.push(labels_mismatch(labels));
                }
            }
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(ty, name, causes))
    }
}

fn labels_mismatch(labels: &Value) -> Cause {
    let pairs: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    Cause::invalid(
        "spec.template.metadata.labels",
        &format!("map[string]string{{{}}}", pairs.join(", ")),
        "`selector` does not match template `labels`",
    )
}

fn schema_values(schema: &Value, v: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), v.as_f64()) {
        if n < min {
            causes.push(Cause::invalid(
                path,
                &v.to_string(),
                &format!(
                    "{path} in body should be greater than or equal to {}",
                    schema["minimum"]
                ),
            ));
        }
    }
    if let (Some(max), Some(n)) = (schema["maximum"].as_f64(), v.as_f64()) {
        if n > max {
            causes.push(Cause::invalid(
                path,
                &v.to_string(),
                &format!(
                    "{path} in body should be less than or equal to {}",
                    schema["maximum"]
                ),
            ));
        }
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(v) {
            let list: Vec<String> = options.iter().map(|o| o.to_string()).collect();
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                message: format!(
                    "Unsupported value: {v}: supported values: {}",
                    list.join(", ")
                ),
                field: path.to_string(),
            });
        }
    }
    if let (Some(max), Some(s)) = (schema["maxLength"].as_u64(), v.as_str()) {
        if s.chars().count() as u64 > max {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                message: format!("Too long: may not be more than {max} bytes"),
                field: path.to_string(),
            });
        }
    }
    if let Some(map) = v.as_object() {
        for (k, child) in map {
            if let Some(s) = schema["properties"].get(k) {
                schema_values(s, child, &format!("{path}.{k}"), causes);
            }
        }
        for req in schema["required"].as_array().into_iter().flatten() {
            if let Some(r) = req.as_str().filter(|r| map.get(*r).is_none()) {
                causes.push(Cause::required(&format!("{path}.{r}")));
            }
        }
    }
}

/// 422 when an update changes a field the real server refuses to change.
pub(crate) fn immutable(ty: &ResourceType, name: &str, old: &Value, new: &Value) -> Res<()> {
    let mut causes = Vec::new();
    let changed = |path: &[&str]| {
        let get = |o: &Value| path.iter().fold(o.clone(), |v, k| v[*k].clone());
        let (a, b) = (get(old), get(new));
        (a != b).then_some((a, b))
    };
    let immutable_cause = |field: &str, go_type: &str, v: &Value| {
        Cause::invalid(field, &format!("{go_type}{v}"), "field is immutable")
    };
    match ty.kind.as_str() {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            if let Some((_, b)) = changed(&["spec", "selector"]) {
                causes.push(immutable_cause("spec.selector", "v1.LabelSelector", &b));
            }
        }
        "Job" => {
            if let Some((_, b)) = changed(&["spec", "selector"]) {
                causes.push(immutable_cause("spec.selector", "v1.LabelSelector", &b));
            }
            if let Some((_, b)) = changed(&["spec", "template"]) {
                causes.push(immutable_cause("spec.template", "core.PodTemplateSpec", &b));
            }
        }
        "Service" => {
            let old_ip = old["spec"]["clusterIP"].as_str().unwrap_or("");
            let new_ip = new["spec"]["clusterIP"].as_str().unwrap_or("");
            if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
                causes.push(immutable_cause("spec.clusterIP", "", &Value::from(new_ip)));
            }
        }
        "ConfigMap" | "Secret" if old["immutable"] == Value::Bool(true) => {
            for field in ["data", "binaryData", "stringData"] {
                if changed(&[field]).is_some() {
                    causes.push(Cause {
                        reason: "FieldValueForbidden",
                        message: "Forbidden: field is immutable when `immutable` is set".into(),
                        field: field.into(),
                    });
                }
            }
            if new["immutable"] != Value::Bool(true) {
                causes.push(immutable_cause("immutable", "", &new["immutable"]));
            }
        }
        "PersistentVolumeClaim" => {
            let mut a = old["spec"].clone();
            let mut b = new["spec"].clone();
            for s in [&mut a, &mut b] {
                if let Some(m) = s.as_object_mut() {
                    m.remove("resources");
                    m.remove("volumeName");
                    m.remove("volumeAttributesClassName");
                }
            }
            if a != b {
                causes.push(Cause {
                    reason: "FieldValueForbidden",
                    message: "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into(),
                    field: "spec".into(),
                });
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(ty, name, causes))
    }
}
