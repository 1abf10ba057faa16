//! The two steps kustomize runs once, at the end of the whole build: content hash suffixes for generated
//! ConfigMaps and Secrets, then updating references to objects whose name changed (prefix, suffix, hash).

use serde_json::Value;

use super::Res;

/// Appends `-<hash>` to generated objects, with kustomize's hash: sha-256 over Go's JSON encoding of the kind,
/// an empty name and the data, first ten hex digits with `0 1 3 a e` replaced by `g h k m t` (so a suffix never
/// reads as a number or a word).
pub fn add_hashes(acc: &mut [Res]) {
    for r in acc.iter_mut().filter(|r| r.hash) {
        let hash = content_hash(&r.obj);
        let name = format!("{}-{hash}", r.name());
        r.rename(None, Some(&name));
        r.hash = false;
    }
}

pub fn content_hash(obj: &Value) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let mut fields: Vec<(&str, Value)> = vec![
        ("kind", Value::String(kind.into())),
        ("name", Value::String(String::new())),
    ];
    // Measured against kubectl: a ConfigMap without data hashes `"data":""`, a Secret always has a data map.
    if kind == "Secret" {
        fields.push((
            "type",
            obj.get("type")
                .cloned()
                .unwrap_or(Value::String(String::new())),
        ));
        fields.push((
            "data",
            obj.get("data")
                .cloned()
                .unwrap_or(Value::Object(Default::default())),
        ));
    } else {
        fields.push((
            "data",
            obj.get("data")
                .cloned()
                .unwrap_or(Value::String(String::new())),
        ));
        if let Some(b) = obj
            .get("binaryData")
            .filter(|b| b.as_object().is_some_and(|m| !m.is_empty()))
        {
            fields.push(("binaryData", b.clone()));
        }
    }
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut text = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        go_json(&Value::String((*k).into()), &mut text);
        text.push(':');
        go_json(v, &mut text);
    }
    text.push('}');
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    crate::build::hex(digest.as_ref())[..10]
        .chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}

/// JSON as Go's `encoding/json` writes it: sorted keys, and `<`, `>`, `&`, U+2028, U+2029 escaped.
fn go_json(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                        out.push_str(&format!("\\u{:04x}", c as u32))
                    }
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(&Value::String(k.clone()), out);
                out.push(':');
                go_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// What can be referred to: kind, namespace, every name it had, and its name now.
struct Referral {
    kind: String,
    namespace: String,
    names: Vec<String>,
    current: String,
}

/// Rewrites references (by old name) to ConfigMaps, Secrets, ServiceAccounts, PersistentVolumeClaims, Services,
/// Roles and workloads so they name the objects as they are now called.
pub fn update_references(acc: &mut [Res]) {
    let referrals: Vec<Referral> = acc
        .iter()
        .filter(|r| !r.prev.is_empty())
        .map(|r| Referral {
            kind: r.kind().to_string(),
            namespace: r.namespace().to_string(),
            names: r.prev.iter().map(|(_, n)| n.clone()).collect(),
            current: r.name().to_string(),
        })
        .collect();
    if referrals.is_empty() {
        return;
    }
    for r in acc.iter_mut() {
        let namespace = r.namespace().to_string();
        let kind = r.kind().to_string();
        let fix = |slot: Option<&mut Value>, target: &str| {
            let Some(slot) = slot else { return };
            let Some(old) = slot.as_str() else { return };
            let found = referrals.iter().find(|c| {
                c.kind == target
                    && (c.namespace == namespace || c.namespace.is_empty() || namespace.is_empty())
                    && c.names.iter().any(|n| n == old)
            });
            if let Some(c) = found {
                *slot = Value::String(c.current.clone());
            }
        };
        let pod = match kind.as_str() {
            "Pod" => Some("/spec"),
            "Deployment"
            | "ReplicaSet"
            | "DaemonSet"
            | "StatefulSet"
            | "Job"
            | "ReplicationController" => Some("/spec/template/spec"),
            "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
            _ => None,
        };
        if let Some(spec) = pod.and_then(|p| r.obj.pointer_mut(p)) {
            fix(spec.get_mut("serviceAccountName"), "ServiceAccount");
            fix(spec.get_mut("serviceAccount"), "ServiceAccount");
            for s in items(spec, "imagePullSecrets") {
                fix(s.get_mut("name"), "Secret");
            }
            for v in items(spec, "volumes") {
                fix(v.pointer_mut("/configMap/name"), "ConfigMap");
                fix(v.pointer_mut("/secret/secretName"), "Secret");
                fix(
                    v.pointer_mut("/persistentVolumeClaim/claimName"),
                    "PersistentVolumeClaim",
                );
                if let Some(sources) = v.pointer_mut("/projected") {
                    for s in items(sources, "sources") {
                        fix(s.pointer_mut("/configMap/name"), "ConfigMap");
                        fix(s.pointer_mut("/secret/name"), "Secret");
                    }
                }
            }
            for list in ["containers", "initContainers", "ephemeralContainers"] {
                for c in items(spec, list) {
                    for e in items(c, "env") {
                        fix(
                            e.pointer_mut("/valueFrom/configMapKeyRef/name"),
                            "ConfigMap",
                        );
                        fix(e.pointer_mut("/valueFrom/secretKeyRef/name"), "Secret");
                    }
                    for e in items(c, "envFrom") {
                        fix(e.pointer_mut("/configMapRef/name"), "ConfigMap");
                        fix(e.pointer_mut("/secretRef/name"), "Secret");
                    }
                }
            }
        }
        match kind.as_str() {
            "StatefulSet" => fix(r.obj.pointer_mut("/spec/serviceName"), "Service"),
            "Ingress" => {
                fix(
                    r.obj.pointer_mut("/spec/defaultBackend/service/name"),
                    "Service",
                );
                if let Some(spec) = r.obj.get_mut("spec") {
                    for t in items(spec, "tls") {
                        fix(t.get_mut("secretName"), "Secret");
                    }
                    for rule in items(spec, "rules") {
                        if let Some(http) = rule.get_mut("http") {
                            for p in items(http, "paths") {
                                fix(p.pointer_mut("/backend/service/name"), "Service");
                            }
                        }
                    }
                }
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let role_kind = r
                    .obj
                    .pointer("/roleRef/kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                fix(r.obj.pointer_mut("/roleRef/name"), &role_kind);
                for s in items(&mut r.obj, "subjects") {
                    if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount") {
                        fix(s.get_mut("name"), "ServiceAccount");
                    }
                }
            }
            "HorizontalPodAutoscaler" => {
                let target = r
                    .obj
                    .pointer("/spec/scaleTargetRef/kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                fix(r.obj.pointer_mut("/spec/scaleTargetRef/name"), &target);
            }
            _ => {}
        }
    }
}

/// The elements of a list field, or nothing.
fn items<'a>(v: &'a mut Value, field: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(field)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}
