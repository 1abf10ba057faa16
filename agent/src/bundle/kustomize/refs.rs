//! Content hash suffixes for generated ConfigMaps and Secrets, added once at the end of the whole build (before
//! name references are fixed, in `nameref`).

use serde_json::Value;

use super::Res;

/// Appends `-<hash>` to generated objects, with kustomize's hash: sha-256 over Go's JSON encoding of the kind,
/// an empty name and the data, first ten hex digits with `0 1 3 a e` replaced by `g h k m t` (so a suffix never
/// reads as a number or a word).
pub fn add_hashes(acc: &mut [Res]) {
    for r in acc.iter_mut().filter(|r| r.hash) {
        let hash = content_hash(&r.obj);
        let name = format!("{}-{hash}", r.name());
        r.store_previous_id();
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
