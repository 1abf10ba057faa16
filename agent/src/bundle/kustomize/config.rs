//! Transformer configuration: which fields each built-in transformer touches, kustomize's defaults (in
//! `fieldspecs.txt`) extended by a kustomization's `configurations` files (kustomize's documented format:
//! `commonLabels`, `nameReference`, `varReference`, … lists of field specs). A base's configurations stay in
//! force in the overlays built on it, as in kustomize.

use std::sync::OnceLock;

use serde::Deserialize;

use super::fieldspec::FieldSpec;
use super::files::RepoFiles;
use super::load::Kustomization;
use super::{KustomizeError, Result};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TransformerConfig {
    pub name_prefix: Vec<FieldSpec>,
    pub name_suffix: Vec<FieldSpec>,
    pub common_labels: Vec<FieldSpec>,
    pub template_labels: Vec<FieldSpec>,
    /// Extra fields for every `labels:` entry (kustomize's `labels` configuration).
    pub labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub namespace: Vec<FieldSpec>,
    pub var_reference: Vec<FieldSpec>,
    pub name_reference: Vec<NameReference>,
    pub images: Vec<FieldSpec>,
    pub replicas: Vec<FieldSpec>,
    /// A kustomization's `openapi` schema (merge keys of custom kinds); an overlay's own wins over its bases'.
    #[serde(skip)]
    pub openapi: Option<std::sync::Arc<super::smp::Schema>>,
}

/// Fields (`field_specs`) that hold the name of an object of `kind` (and `group`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct NameReference {
    pub kind: String,
    pub group: Option<String>,
    pub version: Option<String>,
    pub field_specs: Vec<FieldSpec>,
}

impl NameReference {
    pub fn group(&self) -> &str {
        self.group
            .as_deref()
            .map(|g| g.split('/').next().unwrap_or(g))
            .unwrap_or("")
    }
}

impl TransformerConfig {
    /// A kustomization's own configuration: its `configurations` files first, then kustomize's defaults.
    pub fn own(custom: &TransformerConfig) -> TransformerConfig {
        let mut own = TransformerConfig::default();
        own.merge(custom);
        own.merge(TransformerConfig::defaults());
        own
    }

    /// kustomize's defaults.
    pub fn defaults() -> &'static TransformerConfig {
        static DEFAULTS: OnceLock<TransformerConfig> = OnceLock::new();
        DEFAULTS.get_or_init(|| parse_table(include_str!("fieldspecs.txt")))
    }

    /// Adds another configuration's specs after these, as kustomize merges them: an incoming spec is dropped when
    /// one already present has the same path and is of the incoming one's kind (or narrower). So a
    /// `configurations` file naming a kind for `metadata/name` narrows the default that named every kind, and a
    /// base's narrowed configuration stays narrowed in its overlays.
    pub fn merge(&mut self, other: &TransformerConfig) {
        fn add(to: &mut Vec<FieldSpec>, from: &[FieldSpec]) {
            for s in from {
                if !to.iter().any(|have| have.path == s.path && have.within(s)) {
                    to.push(s.clone());
                }
            }
        }
        add(&mut self.name_prefix, &other.name_prefix);
        add(&mut self.name_suffix, &other.name_suffix);
        add(&mut self.common_labels, &other.common_labels);
        add(&mut self.template_labels, &other.template_labels);
        add(&mut self.labels, &other.labels);
        add(&mut self.common_annotations, &other.common_annotations);
        add(&mut self.namespace, &other.namespace);
        add(&mut self.var_reference, &other.var_reference);
        add(&mut self.images, &other.images);
        add(&mut self.replicas, &other.replicas);
        if self.openapi.is_none() {
            self.openapi = other.openapi.clone();
        }
        for r in &other.name_reference {
            match self
                .name_reference
                .iter_mut()
                .find(|m| m.kind == r.kind && m.group() == r.group())
            {
                Some(mine) => add(&mut mine.field_specs, &r.field_specs),
                None => self.name_reference.push(r.clone()),
            }
        }
    }
}

/// Reads the compact table: `[section]` or `[nameReference KIND[.GROUP]]` headers, then `KIND[.GROUP] PATH
/// [create]` lines (`*` for every kind).
fn parse_table(text: &str) -> TransformerConfig {
    let mut c = TransformerConfig::default();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = head.to_string();
            if let Some(target) = head.strip_prefix("nameReference ") {
                let (kind, group) = split_kind(target);
                c.name_reference.push(NameReference {
                    kind,
                    group,
                    version: None,
                    field_specs: Vec::new(),
                });
            }
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(path)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (kind, group) = split_kind(kind);
        let spec = FieldSpec {
            group,
            version: None,
            kind: (kind != "*").then_some(kind),
            path: path.to_string(),
            create: parts.next() == Some("create"),
        };
        let list = match section.as_str() {
            "commonLabels" => &mut c.common_labels,
            "namePrefix" => &mut c.name_prefix,
            "nameSuffix" => &mut c.name_suffix,
            "templateLabels" => &mut c.template_labels,
            "commonAnnotations" => &mut c.common_annotations,
            "namespace" => &mut c.namespace,
            "varReference" => &mut c.var_reference,
            "images" => &mut c.images,
            "replicas" => &mut c.replicas,
            _ => match c.name_reference.last_mut() {
                Some(r) => &mut r.field_specs,
                None => continue,
            },
        };
        list.push(spec);
    }
    c
}

fn split_kind(s: &str) -> (String, Option<String>) {
    match s.split_once('.') {
        Some((k, g)) => (k.to_string(), Some(g.to_string())),
        None => (s.to_string(), None),
    }
}

/// A kustomization's `configurations` files and `crds`, merged in the order listed.
pub fn custom(files: &RepoFiles, k: &Kustomization) -> Result<TransformerConfig> {
    let mut custom = TransformerConfig::default();
    for reference in &k.spec.configurations {
        let bytes = k.read(files, reference)?;
        let path = k.resolve(reference)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| k.invalid(format!("configurations: {reference:?} is not UTF-8")))?;
        for doc in crate::bundle::parse_documents(&path, &text)
            .map_err(|e| KustomizeError::Manifest(e.to_string()))?
        {
            let extra: TransformerConfig =
                serde_json::from_value(doc).map_err(|e| KustomizeError::Invalid {
                    file: path.clone(),
                    message: format!("not a transformer configuration: {e}"),
                })?;
            custom.merge(&extra);
        }
    }
    for reference in &k.spec.crds {
        let path = k.resolve(reference)?;
        let text = String::from_utf8(k.read(files, reference)?)
            .map_err(|_| k.invalid(format!("crds: {reference:?} is not UTF-8")))?;
        custom.merge(&super::crds::config_from(&path, &text)?);
    }
    Ok(custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_hold_every_section() {
        let d = TransformerConfig::defaults();
        assert!(d
            .common_labels
            .iter()
            .any(|s| s.path == "spec/selector/matchLabels"));
        assert!(d
            .name_reference
            .iter()
            .any(|r| r.kind == "ConfigMap" && !r.field_specs.is_empty()));
        let role = d.name_reference.iter().find(|r| r.kind == "Role").unwrap();
        assert_eq!(role.group(), "rbac.authorization.k8s.io");
        assert!(!d.var_reference.is_empty() && !d.namespace.is_empty());
    }
}
