//! `replacements` (ReplacementTransformer): copy a value from one field of one object into fields of others.
//!
//! A source names one object (kind, name, namespace, group, version; any earlier name counts) and a field path
//! (default `metadata.name`); each target selects objects (`select`, minus any `reject`) and field paths. Field
//! paths are dotted, with `[key=value]` picking a list element by a field, a number picking one by position and
//! `*` every element. `options.delimiter` with `index` takes or replaces one part of a delimited string;
//! `options.create` makes missing fields.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::files::RepoFiles;
use super::load::Kustomization;
use super::{KustomizeError, Res, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct Replacement {
    path: Option<String>,
    source: Option<Source>,
    targets: Vec<TargetSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Source {
    group: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    field_path: Option<String>,
    options: Options,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Options {
    delimiter: Option<String>,
    index: i64,
    create: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct TargetSpec {
    select: Option<Selector>,
    reject: Vec<Selector>,
    field_paths: Vec<String>,
    options: Options,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Selector {
    group: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    label_selector: Option<String>,
    annotation_selector: Option<String>,
}

impl Selector {
    fn matches(&self, r: &Res) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w.is_empty() || w == have)
        };
        let labels = |field: &str, sel: &Option<String>| {
            let Some(sel) = sel else { return true };
            let map = r
                .obj
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_object);
            sel.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .all(|req| match req.split_once('=') {
                    Some((k, v)) => {
                        map.and_then(|m| m.get(k.trim())).and_then(Value::as_str)
                            == Some(v.trim_start_matches('=').trim())
                    }
                    None => map.is_some_and(|m| m.contains_key(req)),
                })
        };
        eq(&self.group, r.group())
            && eq(&self.version, r.version())
            && eq(&self.kind, r.kind())
            && self
                .name
                .as_deref()
                .is_none_or(|n| n.is_empty() || r.answers_to(n))
            && self.namespace.as_deref().is_none_or(|n| {
                n.is_empty() || r.namespace() == n || r.prev.iter().any(|(ns, _)| ns == n)
            })
            && labels("labels", &self.label_selector)
            && labels("annotations", &self.annotation_selector)
    }
}

pub fn run(files: &RepoFiles, k: &Kustomization, list: &[Value], acc: &mut [Res]) -> Result<()> {
    for (i, raw) in list.iter().enumerate() {
        let field = format!("replacements[{i}]");
        let parsed: Replacement =
            serde_json::from_value(raw.clone()).map_err(|e| k.invalid(format!("{field}: {e}")))?;
        if let Some(path) = &parsed.path {
            let bytes = k.read(files, path)?;
            let file = k.resolve(path)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| k.invalid(format!("{field}: {path:?} is not UTF-8")))?;
            for doc in crate::bundle::parse_documents(&file, &text)
                .map_err(|e| KustomizeError::Manifest(e.to_string()))?
            {
                let items = match doc {
                    Value::Array(items) => items,
                    other => vec![other],
                };
                for item in items {
                    let r: Replacement =
                        serde_json::from_value(item).map_err(|e| KustomizeError::Invalid {
                            file: file.clone(),
                            message: format!("not a replacement: {e}"),
                        })?;
                    replace(k, &field, &r, acc)?;
                }
            }
        } else {
            replace(k, &field, &parsed, acc)?;
        }
    }
    Ok(())
}

fn replace(k: &Kustomization, field: &str, r: &Replacement, acc: &mut [Res]) -> Result<()> {
    let Some(source) = &r.source else {
        return Err(k.invalid(format!("{field} has neither a source nor a path")));
    };
    let select = Selector {
        group: source.group.clone(),
        version: source.version.clone(),
        kind: source.kind.clone(),
        name: source.name.clone(),
        namespace: source.namespace.clone(),
        ..Selector::default()
    };
    let found: Vec<&Res> = acc.iter().filter(|r| select.matches(r)).collect();
    let from = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(k.invalid(format!(
                "{field}: no object matches the source ({}); check its kind and name",
                describe(source)
            )))
        }
        _ => {
            return Err(k.invalid(format!(
                "{field}: {} objects match the source ({}); name it more precisely",
                found.len(),
                describe(source)
            )))
        }
    };
    let path = source.field_path.as_deref().unwrap_or("metadata.name");
    let mut value = get(&from.obj, &steps(path)).ok_or_else(|| {
        k.invalid(format!(
            "{field}: the source {} {} has no field {path}",
            from.kind(),
            from.name()
        ))
    })?;
    if let (Some(d), Some(s)) = (&source.options.delimiter, value.as_str()) {
        let parts: Vec<&str> = s.split(d.as_str()).collect();
        let part = usize::try_from(source.options.index)
            .ok()
            .and_then(|i| parts.get(i))
            .ok_or_else(|| {
                k.invalid(format!(
                    "{field}: source options.index {} is outside the {} parts of {s:?}",
                    source.options.index,
                    parts.len()
                ))
            })?;
        value = Value::String(part.to_string());
    }
    for target in &r.targets {
        let Some(select) = &target.select else {
            return Err(k.invalid(format!("{field}: a target has no select")));
        };
        for res in acc.iter_mut() {
            if !select.matches(res) || target.reject.iter().any(|s| s.matches(res)) {
                continue;
            }
            for path in &target.field_paths {
                let ok = set(&mut res.obj, &steps(path), &value, &target.options);
                if !ok && target.options.create {
                    return Err(k.invalid(format!(
                        "{field}: cannot create {path} in {} {}",
                        res.kind(),
                        res.name()
                    )));
                }
            }
        }
    }
    Ok(())
}

fn describe(s: &Source) -> String {
    [&s.kind, &s.namespace, &s.name]
        .iter()
        .filter_map(|v| v.as_deref())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Dotted path steps; dots inside `[...]` belong to the step.
fn steps(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c)
            }
            ']' => {
                depth -= 1;
                cur.push(c)
            }
            '.' if depth == 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

fn get(v: &Value, steps: &[String]) -> Option<Value> {
    let Some((first, rest)) = steps.split_first() else {
        return Some(v.clone());
    };
    match v {
        Value::Object(m) => get(m.get(first.as_str())?, rest),
        Value::Array(items) => {
            if let Some((key, want)) = matcher(first) {
                let item = items
                    .iter()
                    .find(|i| i.get(&key).map(scalar_text).as_deref() == Some(want.as_str()))?;
                get(item, rest)
            } else {
                get(items.get(first.parse::<usize>().ok()?)?, rest)
            }
        }
        _ => None,
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `[key=value]` -> (key, value).
fn matcher(step: &str) -> Option<(String, String)> {
    let inner = step.strip_prefix('[')?.strip_suffix(']')?;
    let (k, v) = inner.split_once('=')?;
    Some((k.to_string(), v.to_string()))
}

/// Sets the field; `false` when the path does not exist and may not be created.
fn set(v: &mut Value, steps: &[String], value: &Value, o: &Options) -> bool {
    let Some((first, rest)) = steps.split_first() else {
        *v = match (&o.delimiter, v.as_str(), value.as_str()) {
            (Some(d), Some(old), Some(new)) => Value::String(splice(old, d, o.index, new)),
            _ => value.clone(),
        };
        return true;
    };
    match v {
        Value::Array(items) => {
            if first == "*" {
                let mut any = false;
                for item in items.iter_mut() {
                    any |= set(item, rest, value, o);
                }
                return any;
            }
            if let Some((key, want)) = matcher(first) {
                let mut any = false;
                for item in items.iter_mut() {
                    if item.get(&key).map(scalar_text).as_deref() == Some(want.as_str()) {
                        any |= set(item, rest, value, o);
                    }
                }
                return any;
            }
            match first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(item) => set(item, rest, value, o),
                None => false,
            }
        }
        Value::Object(map) => {
            if !map.contains_key(first.as_str()) {
                if !o.create || matcher(first).is_some() {
                    return false;
                }
                map.insert(first.clone(), Value::Object(Map::new()));
            }
            match map.get_mut(first.as_str()) {
                Some(next) => set(next, rest, value, o),
                None => false,
            }
        }
        Value::Null if o.create => {
            *v = Value::Object(Map::new());
            set(v, steps, value, o)
        }
        _ => false,
    }
}

/// Replaces part `index` of `old` split at `delimiter` (an index past the end appends, below zero prepends).
fn splice(old: &str, delimiter: &str, index: i64, new: &str) -> String {
    let mut parts: Vec<&str> = old.split(delimiter).collect();
    match usize::try_from(index) {
        Ok(i) if i < parts.len() => parts[i] = new,
        Ok(_) => parts.push(new),
        Err(_) => parts.insert(0, new),
    }
    parts.join(delimiter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_pick_list_elements_and_create_fields() {
        let mut v = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let o = Options::default();
        assert!(set(
            &mut v,
            &steps("spec.containers.[name=b].image"),
            &json!("z"),
            &o
        ));
        assert_eq!(v["spec"]["containers"][1]["image"], "z");
        assert_eq!(get(&v, &steps("spec.containers.0.image")), Some(json!("x")));
        assert!(!set(&mut v, &steps("data.k"), &json!("v"), &o));
        let create = Options { create: true, ..o };
        assert!(set(&mut v, &steps("data.k"), &json!("v"), &create));
        assert_eq!(v["data"]["k"], "v");
        assert_eq!(splice("a.b.c", ".", 1, "X"), "a.X.c");
        assert_eq!(splice("a.b", ".", 5, "X"), "a.b.X");
    }
}
