//! The transformer pipeline of one kustomization, in kustomize's order: the transformers its fields configure
//! (patchesStrategicMerge, patches, namespace, namePrefix, nameSuffix, labels, annotations, patchesJson6902,
//! replicas, images, replacements), then its `transformers` entries in the order listed.
//!
//! Each step is one transformer with its own configuration, whether it came from a field or from a builtin
//! transformer config; which fields a step touches follows the transformer configuration (kustomize's default
//! field specs plus `configurations`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::config::TransformerConfig;
use super::fieldspec::FieldSpec;
use super::files::RepoFiles;
use super::load::{Image, Kustomization, Patch, Replica};
use super::{builtin, images, labels, names, patches, replacements, Res, Result};

/// One transformer and its configuration.
pub enum Step {
    StrategicMerge(Vec<String>),
    Patches(Vec<Patch>),
    Namespace(names::NamespaceOptions),
    Prefix(String, Vec<FieldSpec>, Value),
    Suffix(String, Vec<FieldSpec>, Value),
    Labels(BTreeMap<String, String>, Vec<FieldSpec>),
    Annotations(BTreeMap<String, String>, Vec<FieldSpec>),
    Json6902(Vec<Patch>),
    Replicas(Vec<Replica>, Vec<FieldSpec>),
    Images(Vec<Image>, Vec<FieldSpec>),
    Replacements(Vec<Value>),
    /// A builtin ValueAddTransformer and the `transformers` entry that configured it.
    ValueAdd(super::valueadd::ValueAdd, String),
}

/// What a field's transformer is recorded as (buildMetadata transformerAnnotations).
pub fn builtin_by(kind: &str) -> Value {
    json!({"apiVersion": "builtin", "kind": kind})
}

pub fn run(
    files: &RepoFiles,
    k: &Kustomization,
    config: &TransformerConfig,
    acc: &mut Vec<Res>,
) -> Result<()> {
    let mut steps = from_fields(k, config);
    steps.extend(builtin::transformers(files, k)?);
    for step in steps {
        run_step(files, k, config, step, acc)?;
    }
    Ok(())
}

fn from_fields(k: &Kustomization, config: &TransformerConfig) -> Vec<Step> {
    let s = &k.spec;
    let mut steps = Vec::new();
    if !s.patches_strategic_merge.is_empty() {
        steps.push(Step::StrategicMerge(s.patches_strategic_merge.clone()));
    }
    if !s.patches.is_empty() {
        steps.push(Step::Patches(s.patches.clone()));
    }
    if let Some(ns) = s.namespace.as_deref().filter(|n| !n.is_empty()) {
        steps.push(Step::Namespace(names::NamespaceOptions::new(
            ns,
            &k.file,
            builtin_by("NamespaceTransformer"),
        )));
    }
    if let Some(p) = s.name_prefix.as_deref().filter(|p| !p.is_empty()) {
        steps.push(Step::Prefix(
            p.into(),
            config.name_prefix.clone(),
            builtin_by("PrefixTransformer"),
        ));
    }
    if let Some(p) = s.name_suffix.as_deref().filter(|p| !p.is_empty()) {
        steps.push(Step::Suffix(
            p.into(),
            config.name_suffix.clone(),
            builtin_by("SuffixTransformer"),
        ));
    }
    if !s.common_labels.is_empty() {
        steps.push(Step::Labels(
            s.common_labels.clone(),
            config.common_labels.clone(),
        ));
    }
    for set in &s.labels {
        let mut specs = if set.include_selectors {
            config.common_labels.clone()
        } else if set.include_templates {
            config.template_labels.clone()
        } else {
            vec![FieldSpec::new(None, "metadata/labels", true)]
        };
        specs.extend(config.labels.iter().cloned());
        specs.extend(set.fields.iter().cloned());
        steps.push(Step::Labels(set.pairs.clone(), specs));
    }
    if !s.common_annotations.is_empty() {
        steps.push(Step::Annotations(
            s.common_annotations.clone(),
            config.common_annotations.clone(),
        ));
    }
    if !s.patches_json6902.is_empty() {
        steps.push(Step::Json6902(s.patches_json6902.clone()));
    }
    if !s.replicas.is_empty() {
        steps.push(Step::Replicas(s.replicas.clone(), config.replicas.clone()));
    }
    if !s.images.is_empty() {
        steps.push(Step::Images(s.images.clone(), config.images.clone()));
    }
    if !s.replacements.is_empty() {
        steps.push(Step::Replacements(s.replacements.clone()));
    }
    steps
}

pub fn run_step(
    files: &RepoFiles,
    k: &Kustomization,
    config: &TransformerConfig,
    step: Step,
    acc: &mut Vec<Res>,
) -> Result<()> {
    match step {
        Step::StrategicMerge(entries) => {
            patches::strategic_merge(files, k, &entries, acc, config.openapi.as_deref())?
        }
        Step::Patches(list) => {
            patches::patches(files, k, &list, "patches", acc, config.openapi.as_deref())?
        }
        Step::Namespace(options) => names::namespace(acc, &options, config),
        Step::Prefix(prefix, specs, by) => {
            names::prefix_suffix(acc, &prefix, "", &specs, &k.file, by)
        }
        Step::Suffix(suffix, specs, by) => {
            names::prefix_suffix(acc, "", &suffix, &specs, &k.file, by)
        }
        Step::Labels(pairs, specs) => labels::add(acc, &pairs, &specs),
        Step::Annotations(pairs, specs) => labels::add(acc, &pairs, &specs),
        Step::Json6902(list) => patches::json6902(files, k, &list, acc)?,
        Step::Replicas(list, specs) => {
            for r in &list {
                images::replicas(acc, r, &specs);
            }
        }
        Step::Images(list, specs) => {
            for image in &list {
                images::images(acc, image, &specs);
            }
        }
        Step::Replacements(list) => replacements::run(files, k, &list, acc)?,
        Step::ValueAdd(v, field) => super::valueadd::run(k, &field, &v, acc)?,
    }
    Ok(())
}
