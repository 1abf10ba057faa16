//! The two steps kustomize runs once, at the end of the whole build: content hash suffixes for generated
//! ConfigMaps and Secrets, then updating references to objects whose name changed (prefix, suffix, hash).

use serde_json::Value;

use super::config::TransformerConfig;
use super::{KustomizeError, Res, Result};

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
    crate::bundle::hex(digest.as_ref())[..10]
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

/// An object renamed during one kustomization level: what it was called when the level began, and now.
struct Renamed {
    kind: String,
    group: String,
    cluster: bool,
    old_ns: String,
    old_name: String,
    new_ns: String,
    new_name: String,
    /// Every earlier name: a reference written against the original name in an overlay still finds it.
    history: Vec<String>,
}

impl Renamed {
    /// The referral a name refers to: one that had it when this level began, else one that ever had it. Two
    /// that would give different new names make the reference ambiguous, which kustomize refuses.
    fn find<'a>(
        all: &[&'a Renamed],
        name: &str,
        ok: impl Fn(&Renamed) -> bool,
    ) -> std::result::Result<Option<&'a Renamed>, String> {
        let pick = |hits: Vec<&'a Renamed>| -> std::result::Result<Option<&'a Renamed>, String> {
            let mut names: Vec<&str> = hits.iter().map(|c| c.new_name.as_str()).collect();
            names.sort();
            names.dedup();
            if names.len() > 1 {
                return Err(format!(
                    "the reference {name:?} could mean several objects ({}); give them distinct names or namespaces",
                    names.join(", ")
                ));
            }
            Ok(hits.first().copied())
        };
        let exact: Vec<&Renamed> = all
            .iter()
            .copied()
            .filter(|c| c.old_name == name && ok(c))
            .collect();
        if !exact.is_empty() {
            return pick(exact);
        }
        pick(
            all.iter()
                .copied()
                .filter(|c| c.history.iter().any(|n| n == name) && ok(c))
                .collect(),
        )
    }
}

/// Marks the identities every object has now; [`fix_references`] later updates references to the objects
/// renamed since. Doing this per kustomization (not once at the end) keeps two bases that both call something
/// `app-config` apart, as in kustomize.
pub fn mark(acc: &mut [Res]) {
    for r in acc.iter_mut() {
        r.mark = r.prev.len();
    }
}

fn old_identity(r: &Res) -> (String, String) {
    r.prev
        .get(r.mark)
        .cloned()
        .unwrap_or_else(|| (r.namespace().to_string(), r.name().to_string()))
}

fn same_ns(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        if s.is_empty() {
            "default".to_string()
        } else {
            s.to_string()
        }
    };
    norm(a) == norm(b)
}

/// Updates every field the name reference configuration lists that still holds the old name of an object
/// renamed since [`mark`].
pub fn fix_references(acc: &mut [Res], config: &TransformerConfig) -> Result<()> {
    let renamed: Vec<Renamed> = acc
        .iter()
        .filter(|r| r.prev.len() > r.mark)
        .map(|r| {
            let (old_ns, old_name) = old_identity(r);
            Renamed {
                kind: r.kind().to_string(),
                group: r.group().to_string(),
                cluster: super::names::cluster_scoped(r),
                old_ns,
                old_name,
                new_ns: r.namespace().to_string(),
                new_name: r.name().to_string(),
                history: r.prev.iter().map(|(_, n)| n.clone()).collect(),
            }
        })
        .collect();
    if renamed.is_empty() {
        return Ok(());
    }
    // Objects that kept their name are candidates too: a reference that fits one of them and a renamed object
    // alike is ambiguous, as kustomize says.
    let mut renamed = renamed;
    renamed.extend(
        acc.iter()
            .filter(|r| r.prev.len() <= r.mark)
            .map(|r| Renamed {
                kind: r.kind().to_string(),
                group: r.group().to_string(),
                cluster: super::names::cluster_scoped(r),
                old_ns: r.namespace().to_string(),
                old_name: r.name().to_string(),
                new_ns: r.namespace().to_string(),
                new_name: r.name().to_string(),
                history: Vec::new(),
            }),
    );
    let mut problem: Option<(String, String)> = None;
    for entry in &config.name_reference {
        let referrals: Vec<&Renamed> = renamed
            .iter()
            .filter(|c| c.kind == entry.kind && (entry.group.is_none() || entry.group() == c.group))
            .collect();
        if referrals.is_empty() {
            continue;
        }
        for x in acc.iter_mut() {
            let (x_ns, _) = old_identity(x);
            let x_cluster = super::names::cluster_scoped(x);
            let specs: Vec<super::fieldspec::FieldSpec> = entry
                .field_specs
                .iter()
                .filter(|s| s.selects(x))
                .map(|s| super::fieldspec::FieldSpec {
                    create: false,
                    ..s.clone()
                })
                .collect();
            for spec in specs {
                // A reference held next to a `kind` (roleRef, scaleTargetRef) is only to that kind.
                let steps = spec.steps();
                let (last, parent) = steps.split_last().expect("paths have a step");
                let parent: Vec<&str> = parent.iter().map(String::as_str).collect();
                super::fieldspec::walk(&mut x.obj, &parent, false, &mut |p| {
                    let Some(map) = p.as_object_mut() else { return };
                    let kind = map.get("kind").and_then(Value::as_str);
                    if !parent.is_empty() && kind.is_some_and(|k| k != entry.kind) {
                        return;
                    }
                    let last = last.trim_end_matches("[]");
                    if let Some(v) = map.get_mut(last) {
                        if let Err(m) = update(v, &referrals, &entry.kind, &x_ns, x_cluster) {
                            problem.get_or_insert((m, spec.path.clone()));
                        }
                    }
                });
                if let Some((message, path)) = problem.take() {
                    return Err(KustomizeError::Invalid {
                        file: x.origin.clone(),
                        message: format!("{} {} field {path}: {message}", x.kind(), x.name()),
                    });
                }
            }
        }
    }
    Ok(())
}

/// One referring field: a name, a list of names (`resourceNames`), or a `{kind, name, namespace}` map (RBAC
/// subjects, webhook services).
fn update(
    v: &mut Value,
    referrals: &[&Renamed],
    kind: &str,
    x_ns: &str,
    x_cluster: bool,
) -> std::result::Result<(), String> {
    match v {
        Value::String(s) => {
            let hit = Renamed::find(referrals, s, |c| {
                c.cluster || x_cluster || same_ns(&c.old_ns, x_ns)
            })?;
            if let Some(c) = hit {
                *s = c.new_name.clone();
            }
        }
        Value::Array(items) => {
            for item in items {
                update(item, referrals, kind, x_ns, x_cluster)?;
            }
        }
        Value::Object(map) => {
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k != kind)
            {
                return Ok(());
            }
            let Some(name) = map.get("name").and_then(Value::as_str) else {
                return Ok(());
            };
            let ns = map
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(x_ns)
                .to_string();
            let hit = Renamed::find(referrals, name, |c| c.cluster || same_ns(&c.old_ns, &ns))?;
            if let Some(c) = hit {
                map.insert("name".into(), Value::String(c.new_name.clone()));
                if !c.cluster && !c.new_ns.is_empty() {
                    map.insert("namespace".into(), Value::String(c.new_ns.clone()));
                }
            }
        }
        _ => {}
    }
    Ok(())
}
