//! `crds`: OpenAPI definitions of custom kinds (a map of type name to `{Schema, Dependencies}`, JSON or YAML),
//! read for the field specs their schema extensions imply, as kustomize reads them:
//! `x-kubernetes-object-ref-kind` / `-api-version` (and `-name-key`) make a name reference,
//! `x-kubernetes-annotation` an annotation field, `x-kubernetes-label-selector` a label field and
//! `x-kubernetes-identity` a name prefix field. `$ref`s are followed into the definitions they name.

use serde_json::{Map, Value};

use super::config::{NameReference, TransformerConfig};
use super::fieldspec::FieldSpec;
use super::{KustomizeError, Result};

/// How deep `$ref`s are followed: deeper than any real schema, and a self-referring one ends.
const MAX_REF_DEPTH: usize = 16;

/// The transformer configuration one `crds` file gives.
pub fn config_from(file: &str, text: &str) -> Result<TransformerConfig> {
    let doc = crate::bundle::parse_documents(file, text)
        .map_err(|e| KustomizeError::Manifest(e.to_string()))?
        .into_iter()
        .next()
        .unwrap_or(Value::Null);
    let Some(defs) = doc.as_object() else {
        return Err(KustomizeError::Invalid {
            file: file.to_string(),
            message: "not an OpenAPI definition map (type name to {Schema, Dependencies}); fix the file listed under crds".into(),
        });
    };
    let mut config = TransformerConfig::default();
    for (name, def) in defs {
        let props = properties(def);
        if !["kind", "apiVersion", "metadata"]
            .iter()
            .all(|p| props.is_some_and(|m| m.contains_key(*p)))
        {
            continue;
        }
        // The kind is the type name's last dot-separated part.
        let kind = name.rsplit('.').next().unwrap_or(name).to_string();
        walk(&mut config, &kind, defs, name, &[], 0);
    }
    Ok(config)
}

fn properties(def: &Value) -> Option<&Map<String, Value>> {
    def.pointer("/Schema/properties").and_then(Value::as_object)
}

fn walk(
    config: &mut TransformerConfig,
    kind: &str,
    defs: &Map<String, Value>,
    type_name: &str,
    path: &[String],
    depth: usize,
) {
    if depth > MAX_REF_DEPTH {
        return;
    }
    let Some(props) = defs.get(type_name).and_then(properties) else {
        return;
    };
    for (prop, schema) in props {
        let ext = |key: &str| schema.get(key).and_then(Value::as_str);
        let mut here = path.to_vec();
        here.push(prop.clone());
        let spec = |p: &[String]| FieldSpec {
            kind: Some(kind.to_string()),
            path: p.join("/"),
            ..FieldSpec::default()
        };
        if ext("x-kubernetes-annotation").is_some() {
            add(&mut config.common_annotations, spec(&here));
        }
        if ext("x-kubernetes-label-selector").is_some() {
            add(&mut config.common_labels, spec(&here));
        }
        if ext("x-kubernetes-identity").is_some() {
            add(&mut config.name_prefix, spec(&here));
        }
        if let (Some(version), Some(target)) = (
            ext("x-kubernetes-object-ref-api-version"),
            ext("x-kubernetes-object-ref-kind"),
        ) {
            let mut name_path = here.clone();
            name_path.push(
                ext("x-kubernetes-object-ref-name-key")
                    .unwrap_or("name")
                    .to_string(),
            );
            let referrer = spec(&name_path);
            match config
                .name_reference
                .iter_mut()
                .find(|r| r.kind == target && r.version.as_deref() == Some(version))
            {
                Some(r) => add(&mut r.field_specs, referrer),
                None => config.name_reference.push(NameReference {
                    kind: target.to_string(),
                    group: None,
                    version: Some(version.to_string()),
                    field_specs: vec![referrer],
                }),
            }
        }
        if let Some(next) = schema.get("$ref").and_then(Value::as_str) {
            if !next.is_empty() {
                walk(config, kind, defs, next, &here, depth + 1);
            }
        }
    }
}

fn add(to: &mut Vec<FieldSpec>, spec: FieldSpec) {
    if !to.contains(&spec) {
        to.push(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_refs_in_referenced_definitions_become_name_references() {
        let text = r#"{
          "x.v1.Thing": {"Schema": {"properties": {"kind": {}, "apiVersion": {}, "metadata": {},
            "spec": {"$ref": "x.v1.ThingSpec"}}}},
          "x.v1.ThingSpec": {"Schema": {"properties": {
            "secretRef": {"x-kubernetes-object-ref-api-version": "v1", "x-kubernetes-object-ref-kind": "Secret"},
            "sel": {"x-kubernetes-label-selector": ""},
            "loop": {"$ref": "x.v1.ThingSpec"}}}}
        }"#;
        let c = config_from("crd.json", text).unwrap();
        let secret = c
            .name_reference
            .iter()
            .find(|r| r.kind == "Secret")
            .unwrap();
        assert!(secret
            .field_specs
            .iter()
            .any(|s| s.path == "spec/secretRef/name" && s.kind.as_deref() == Some("Thing")));
        assert!(c.common_labels.iter().any(|s| s.path == "spec/sel"));
        // The self-referring `loop` ends (the same specs, deeper, are found but nothing runs forever).
        assert!(secret.field_specs.len() > 1);
    }
}
