//! The builtin ValueAddTransformer: writes one value into fields of the objects its targets select, either as the
//! whole field or as a part inserted into a `/`-separated path held there (`filePathPosition`); a target at
//! `metadata/namespace` sets the namespace as the namespace transformer does. Without `value`, the value is the
//! name of the folder of the kustomization listing the transformer.

use serde::Deserialize;
use serde_json::Value;

use super::fieldspec::split_path;
use super::load::{Kustomization, Target};
use super::names::{self, NamespaceOptions};
use super::patches::Matcher;
use super::transform::builtin_by;
use super::{files, KustomizeError, Res, Result};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ValueAdd {
    pub value: String,
    pub targets: Vec<ValueTarget>,
    pub target_file_path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ValueTarget {
    pub selector: Option<Target>,
    pub field_path: String,
    pub file_path_position: i64,
}

/// Reads the config: targets from `targetFilePath` join the inline ones; the value defaults to the folder name.
pub fn configure(
    files: &files::RepoFiles,
    k: &Kustomization,
    field: &str,
    mut v: ValueAdd,
) -> Result<ValueAdd> {
    v.value = v.value.trim().to_string();
    if v.value.is_empty() {
        v.value = files::base_name(&k.dir).to_string();
        if v.value.is_empty() {
            return Err(k.invalid(format!(
                "{field}: ValueAddTransformer without `value` takes the kustomization folder's name, and the repository root has none here; set `value`"
            )));
        }
    }
    if let Some(path) = v.target_file_path.take() {
        let bytes = k.read(files, &path)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| k.invalid(format!("{field}: {path:?} is not UTF-8")))?;
        let file = k.resolve(&path)?;
        for doc in crate::bundle::parse_documents(&file, &text)
            .map_err(|e| KustomizeError::Manifest(e.to_string()))?
        {
            let more: ValueAdd = serde_json::from_value(doc)
                .map_err(|e| k.invalid(format!("{field}: targetFilePath {path:?}: {e}")))?;
            v.targets.extend(more.targets);
        }
    }
    if v.targets.is_empty() {
        return Err(k.invalid(format!(
            "{field}: ValueAddTransformer must specify at least one target"
        )));
    }
    for t in &v.targets {
        if t.field_path.is_empty() {
            return Err(k.invalid(format!("{field}: a target's fieldPath cannot be empty")));
        }
        if t.file_path_position < 0 {
            return Err(k.invalid(format!(
                "{field}: filePathPosition {} cannot be negative",
                t.file_path_position
            )));
        }
    }
    Ok(v)
}

pub fn run(k: &Kustomization, field: &str, v: &ValueAdd, acc: &mut [Res]) -> Result<()> {
    for t in &v.targets {
        let matcher = match &t.selector {
            Some(s) => Some(Matcher::new(s).map_err(|m| k.invalid(format!("{field}: {m}")))?),
            None => None,
        };
        let chosen: Vec<usize> = (0..acc.len())
            .filter(|&i| matcher.as_ref().is_none_or(|m| m.matches(&acc[i])))
            .collect();
        if t.field_path == "metadata/namespace" {
            let o = NamespaceOptions::new(&v.value, &k.file, builtin_by("ValueAddTransformer"));
            for &i in &chosen {
                names::namespace(std::slice::from_mut(&mut acc[i]), &o, &Default::default());
            }
            continue;
        }
        let steps = split_path(&t.field_path);
        for &i in &chosen {
            let r = &mut acc[i];
            let Some(slot) = lookup_create(&mut r.obj, &steps) else {
                return Err(k.invalid(format!(
                    "{field}: {} {} has no scalar at {}",
                    r.kind(),
                    r.name(),
                    t.field_path
                )));
            };
            let old = match slot {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(k.invalid(format!(
                        "{field}: {} {} holds no scalar at {}",
                        r.kind(),
                        r.name(),
                        t.field_path
                    )))
                }
            };
            let new = if t.file_path_position > 0 {
                insert_path_part(&old, (t.file_path_position - 1) as usize, &v.value)
            } else {
                v.value.clone()
            };
            *slot = Value::String(new);
        }
    }
    Ok(())
}

/// The field at `steps`, with missing maps on the way created; None when something on the way is not a map.
fn lookup_create<'a>(v: &'a mut Value, steps: &[String]) -> Option<&'a mut Value> {
    let Some((first, rest)) = steps.split_first() else {
        return Some(v);
    };
    if v.is_null() {
        *v = Value::Object(Default::default());
    }
    let next = v
        .as_object_mut()?
        .entry(first.clone())
        .or_insert(Value::Null);
    lookup_create(next, rest)
}

/// kustomize's path insertion: `part` becomes the `pos`-th `/`-separated element (0 is first, too large is
/// last); a leading `/` stays.
fn insert_path_part(path: &str, pos: usize, part: &str) -> String {
    if part.is_empty() {
        return path.to_string();
    }
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let pos = pos.min(parts.len());
    parts.insert(pos, part);
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::insert_path_part;

    #[test]
    fn path_parts_are_inserted_as_kustomize_inserts_them() {
        assert_eq!(insert_path_part("", 3, "PEACH"), "PEACH");
        assert_eq!(insert_path_part("/", 3, "PEACH"), "/PEACH");
        assert_eq!(insert_path_part("pie", 0, "PEACH"), "PEACH/pie");
        assert_eq!(insert_path_part("/pie", 0, "PEACH"), "/PEACH/pie");
        assert_eq!(insert_path_part("raw", 1, "PEACH"), "raw/PEACH");
        assert_eq!(insert_path_part("/raw", 9, "PEACH"), "/raw/PEACH");
        assert_eq!(
            insert_path_part("a/nice/warm/pie", 3, "PEACH"),
            "a/nice/warm/PEACH/pie"
        );
        assert_eq!(
            insert_path_part("/a/nice/warm/pie", 3, "PEACH"),
            "/a/nice/warm/PEACH/pie"
        );
    }
}
