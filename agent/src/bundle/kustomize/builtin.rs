//! `transformers` and `generators` entries: configurations of kustomize's builtin transformers and generators
//! (`apiVersion: builtin`), written inline, in a file, or as the objects a kustomization folder builds to.
//! Each becomes the same step a kustomization field would configure. Anything else is a plugin, and plugins are
//! never run.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::config::TransformerConfig;
use super::fieldspec::FieldSpec;
use super::files::{Entry, RepoFiles};
use super::load::{Generator, Image, Kustomization, Patch, Replica, Target};
use super::names::NamespaceOptions;
use super::transform::Step;
use super::{generators, KustomizeError, Res, Result};

/// The steps of a kustomization's `transformers` entries, in order.
pub fn transformers(files: &RepoFiles, k: &Kustomization) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for (i, entry) in k.spec.transformers.iter().enumerate() {
        let field = format!("transformers[{i}]");
        for (doc, _) in configs(files, k, entry, &field)? {
            steps.extend(step(files, k, &doc, &field)?);
        }
    }
    Ok(steps)
}

/// Runs a kustomization's `generators` entries.
pub fn generate(files: &RepoFiles, k: &Kustomization, acc: &mut Vec<Res>) -> Result<()> {
    for (i, entry) in k.spec.generators.iter().enumerate() {
        let field = format!("generators[{i}]");
        for (doc, configured_in) in configs(files, k, entry, &field)? {
            let kind = kind_of(k, &doc, &field)?;
            let secret = match kind.as_str() {
                "ConfigMapGenerator" => false,
                "SecretGenerator" => true,
                "IAMPolicyGenerator" => {
                    acc.push(iam_policy(k, &doc, &field)?);
                    continue;
                }
                other => return Err(not_builtin(k, &field, other, "generator")),
            };
            // kustomize reads a builtin generator's config leniently: fields it does not know (a top-level
            // `labels`, say) have no effect there, so they have none here.
            let mut known = strip(&doc);
            if let Some(m) = known.as_object_mut() {
                m.retain(|key, _| GENERATOR_FIELDS.contains(&key.as_str()));
            }
            let mut g: Generator = typed(k, &field, known)?;
            // The generator's own `name` field names the object; `metadata.name` names the generator config
            // and stands in when there is no `name`.
            if g.name.is_empty() {
                g.name = text(&doc, "/metadata/name");
            }
            if g.namespace.is_none() {
                g.namespace = doc
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(String::from);
            }
            let by = configured_by(&doc);
            generators::generate(files, k, &g, &field, secret, (&configured_in, &by), acc)?;
        }
    }
    Ok(())
}

/// The fields of a builtin ConfigMapGenerator or SecretGenerator config besides its metadata.
const GENERATOR_FIELDS: [&str; 9] = [
    "name",
    "namespace",
    "behavior",
    "type",
    "files",
    "literals",
    "envs",
    "env",
    "options",
];

/// IAMPolicyGenerator (`cloud: gke`): a ServiceAccount bound to a Google service account by Workload Identity.
fn iam_policy(k: &Kustomization, doc: &Value, field: &str) -> Result<Res> {
    let cloud = text(doc, "/cloud");
    if cloud != "gke" {
        return Err(k.invalid(format!(
            "{field}: IAMPolicyGenerator cloud {cloud:?} is not supported; kustomize knows only gke"
        )));
    }
    let name = text(doc, "/kubernetesService/name");
    let gsa = text(doc, "/serviceAccount/name");
    let project = text(doc, "/serviceAccount/projectId");
    if name.is_empty() || gsa.is_empty() || project.is_empty() {
        return Err(k.invalid(format!(
            "{field}: IAMPolicyGenerator needs kubernetesService.name, serviceAccount.name and serviceAccount.projectId"
        )));
    }
    let mut meta = json!({
        "name": name,
        "annotations": {"iam.gke.io/gcp-service-account": format!("{gsa}@{project}.iam.gserviceaccount.com")},
    });
    let namespace = text(doc, "/kubernetesService/namespace");
    if !namespace.is_empty() {
        meta["namespace"] = Value::String(namespace);
    }
    let obj = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta});
    let mut r = Res::new(obj, format!("{}, {field}", k.file));
    r.from = Some(super::Origin::Generator {
        file: k.file.clone(),
        by: configured_by(doc),
    });
    Ok(r)
}

/// The config documents of one entry: inline YAML, a file, or a kustomization folder's output.
fn configs(
    files: &RepoFiles,
    k: &Kustomization,
    entry: &str,
    field: &str,
) -> Result<Vec<(Value, String)>> {
    if entry.contains('\n') || entry.trim_start().starts_with('{') {
        let docs = crate::bundle::parse_documents(&format!("{} {field}", k.file), entry)
            .map_err(|e| k.invalid(format!("{field}: {e}")))?;
        return Ok(docs.into_iter().map(|d| (d, k.file.clone())).collect());
    }
    let path = k.resolve(entry)?;
    if let Some(Entry::Dir) = files.get(&path) {
        let limits = crate::config::Limits {
            max_file_size: files.max_file_size(),
            ..crate::config::Limits::default()
        };
        let built = super::build_configs(files, &path, &limits)?;
        return Ok(built.into_iter().map(|o| (o, path.clone())).collect());
    }
    let bytes = k.read(files, entry)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| k.invalid(format!("{field}: {entry:?} is not UTF-8")))?;
    let docs = crate::bundle::parse_documents(&path, &text)
        .map_err(|e| KustomizeError::Manifest(e.to_string()))?;
    Ok(docs.into_iter().map(|d| (d, path.clone())).collect())
}

fn kind_of(k: &Kustomization, doc: &Value, field: &str) -> Result<String> {
    let api = text(doc, "/apiVersion");
    let kind = text(doc, "/kind");
    if api != "builtin" {
        return Err(KustomizeError::Unsupported {
            file: k.file.clone(),
            field: format!("{field} ({api} {kind})"),
            why: "plugins (exec, KRM functions, Go plugins) are never run; only `apiVersion: builtin` configs are built".into(),
        });
    }
    Ok(kind)
}

fn not_builtin(k: &Kustomization, field: &str, kind: &str, what: &str) -> KustomizeError {
    match kind {
        "HelmChartInflationGenerator" => KustomizeError::Unsupported {
            file: k.file.clone(),
            field: format!("{field} (HelmChartInflationGenerator)"),
            why: "Helm charts are not inflated; render the chart into manifests".into(),
        },
        _ => k.invalid(format!(
            "{field}: unable to load builtin {kind}: it is not a builtin {what} kustomize knows here"
        )),
    }
}

fn text(doc: &Value, pointer: &str) -> String {
    doc.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// How buildMetadata names this config: apiVersion, kind, and its metadata name and namespace.
fn configured_by(doc: &Value) -> Value {
    let mut by = json!({"apiVersion": text(doc, "/apiVersion"), "kind": text(doc, "/kind")});
    for field in ["name", "namespace"] {
        let v = text(doc, &format!("/metadata/{field}"));
        if !v.is_empty() {
            by[field] = Value::String(v);
        }
    }
    by
}

/// The config without the fields every config has.
fn strip(doc: &Value) -> Value {
    let mut d = doc.clone();
    if let Some(m) = d.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        m.remove("metadata");
    }
    d
}

/// The config with the map under `key` holding strings: kustomize reads builtin configs into string maps,
/// turning a number or a boolean written plain (`area: 51`) into its text.
fn scalars_as_strings(doc: &Value, key: &str) -> Value {
    let mut doc = doc.clone();
    if let Some(map) = doc.get_mut(key).and_then(Value::as_object_mut) {
        for v in map.values_mut() {
            match v {
                Value::Number(n) => *v = Value::String(n.to_string()),
                Value::Bool(b) => *v = Value::String(b.to_string()),
                _ => {}
            }
        }
    }
    doc
}

fn typed<T: DeserializeOwned>(k: &Kustomization, field: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| k.invalid(format!("{field}: {e}")))
}

fn get<T: DeserializeOwned + Default>(
    k: &Kustomization,
    field: &str,
    doc: &Value,
    key: &str,
) -> Result<T> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => typed(k, &format!("{field}.{key}"), v.clone()),
    }
}

fn step(files: &RepoFiles, k: &Kustomization, doc: &Value, field: &str) -> Result<Vec<Step>> {
    let kind = kind_of(k, doc, field)?;
    let by = configured_by(doc);
    let specs: Vec<FieldSpec> = get(k, field, doc, "fieldSpecs")?;
    Ok(vec![match kind.as_str() {
        "LabelTransformer" => Step::Labels(
            get(k, field, &scalars_as_strings(doc, "labels"), "labels")?,
            specs,
        ),
        "AnnotationsTransformer" => Step::Annotations(
            get(
                k,
                field,
                &scalars_as_strings(doc, "annotations"),
                "annotations",
            )?,
            specs,
        ),
        "NamespaceTransformer" => {
            let mut o = NamespaceOptions::new(&text(doc, "/metadata/namespace"), &k.file, by);
            o.specs = specs;
            o.unset_only = doc
                .get("unsetOnly")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if let Some(s) = doc.get("setRoleBindingSubjects").and_then(Value::as_str) {
                o.subjects = s.to_string();
            }
            Step::Namespace(o)
        }
        "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" => {
            let prefix: String = get(k, field, doc, "prefix")?;
            let suffix: String = get(k, field, doc, "suffix")?;
            if suffix.is_empty() {
                Step::Prefix(prefix, specs, by)
            } else if prefix.is_empty() {
                Step::Suffix(suffix, specs, by)
            } else {
                // kustomize runs a PrefixSuffixTransformer as its prefix transformer, then its suffix one.
                return Ok(vec![
                    Step::Prefix(prefix, specs.clone(), by.clone()),
                    Step::Suffix(suffix, specs, by),
                ]);
            }
        }
        "ImageTagTransformer" => {
            let image: Image = get(k, field, doc, "imageTag")?;
            Step::Images(vec![image], specs)
        }
        "ReplicaCountTransformer" => {
            let replica: Replica = get(k, field, doc, "replica")?;
            let specs = if specs.is_empty() {
                TransformerConfig::defaults().replicas.clone()
            } else {
                specs
            };
            Step::Replicas(vec![replica], specs)
        }
        "PatchTransformer" => Step::Patches(vec![Patch {
            path: get(k, field, doc, "path")?,
            patch: get(k, field, doc, "patch")?,
            target: get(k, field, doc, "target")?,
            options: get(k, field, doc, "options")?,
        }]),
        "PatchJson6902Transformer" => {
            let target: Option<Target> = get(k, field, doc, "target")?;
            Step::Json6902(vec![Patch {
                path: get(k, field, doc, "path")?,
                patch: get(k, field, doc, "jsonOp")?,
                target,
                options: None,
            }])
        }
        "PatchStrategicMergeTransformer" => {
            let mut entries: Vec<String> = get(k, field, doc, "paths")?;
            let inline: Option<String> = get(k, field, doc, "patches")?;
            entries.extend(inline);
            Step::StrategicMerge(entries)
        }
        "ReplacementTransformer" => Step::Replacements(get(k, field, doc, "replacements")?),
        "ValueAddTransformer" => {
            let config = typed(k, field, strip(doc))?;
            Step::ValueAdd(
                super::valueadd::configure(files, k, field, config)?,
                field.to_string(),
            )
        }
        other => return Err(not_builtin(k, field, other, "transformer")),
    }])
}
