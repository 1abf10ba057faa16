//! `buildMetadata`: annotations saying where each object came from (`originAnnotations`) and which
//! transformers renamed or moved it (`transformerAnnotations`), and kustomize's managed-by label
//! (`managedByLabel`). Paths are relative to the kustomization that asks for them.

use serde_json::Value;

use super::load::Kustomization;
use super::{Origin, Res, Result};

pub const ORIGIN: &str = "config.kubernetes.io/origin";
pub const TRANSFORMATIONS: &str = "alpha.config.kubernetes.io/transformations";
/// What `managedByLabel` writes; Outpost's own managed-by label replaces it on every object it applies.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kustomize-v5.5.0");

pub fn annotate(k: &Kustomization, acc: &mut [Res]) -> Result<()> {
    let (mut origin, mut transformers, mut managed) = (false, false, false);
    for option in &k.spec.build_metadata {
        match option.as_str() {
            "originAnnotations" => origin = true,
            "transformerAnnotations" => transformers = true,
            "managedByLabel" => managed = true,
            other => {
                return Err(k.invalid(format!(
                "buildMetadata: {other:?} is not one of managedByLabel, originAnnotations, transformerAnnotations"
            )))
            }
        }
    }
    for r in acc.iter_mut() {
        if origin {
            if let Some(from) = &r.from {
                let text = match from {
                    Origin::File(path) => format!("path: {}\n", scalar(&relative(&k.dir, path))),
                    Origin::Generator { file, by } => format!(
                        "configuredIn: {}\nconfiguredBy:\n{}",
                        scalar(&relative(&k.dir, file)),
                        mapping(by, "  ")
                    ),
                };
                set(&mut r.obj, "annotations", ORIGIN, text);
            }
        }
        if transformers && !r.transformations.is_empty() {
            let mut text = String::new();
            for (file, by) in &r.transformations {
                text.push_str(&format!(
                    "- configuredIn: {}\n  configuredBy:\n{}",
                    scalar(&relative(&k.dir, file)),
                    mapping(by, "    ")
                ));
            }
            set(&mut r.obj, "annotations", TRANSFORMATIONS, text);
        }
        if managed {
            set(&mut r.obj, "labels", MANAGED_BY.0, MANAGED_BY.1.into());
        }
    }
    Ok(())
}

fn set(obj: &mut Value, field: &str, key: &str, value: String) {
    if let Some(meta) = super::metadata(obj) {
        let map = meta
            .entry(field)
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(map) = map.as_object_mut() {
            map.insert(key.into(), Value::String(value));
        }
    }
}

/// `apiVersion`, `kind`, `name`, `namespace` of a configuredBy, one per line.
fn mapping(by: &Value, indent: &str) -> String {
    let mut out = String::new();
    for key in ["apiVersion", "kind", "name", "namespace"] {
        if let Some(v) = by.get(key).and_then(Value::as_str) {
            out.push_str(&format!("{indent}{key}: {}\n", scalar(v)));
        }
    }
    out
}

/// A YAML scalar: plain when that reads back as the same string, else double-quoted.
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !matches!(
            s,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// `path` (repository-relative) as seen from folder `dir`.
pub fn relative(dir: &str, path: &str) -> String {
    let from: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    let to: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_asking_kustomization() {
        assert_eq!(
            relative("prod", "base/kustomization.yaml"),
            "../base/kustomization.yaml"
        );
        assert_eq!(relative("", "service.yaml"), "service.yaml");
        assert_eq!(relative("a/b", "a/b/c.yaml"), "c.yaml");
    }
}
