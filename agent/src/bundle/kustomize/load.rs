//! Reading a kustomization file and the resource files it lists.
//!
//! Every top-level field is checked against the list of fields Outpost implements before anything is built, so
//! a kustomization using a feature we lack fails loudly instead of building something different from kustomize.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::files::{self, Entry, RepoFiles};
use super::{KustomizeError, Result, KUSTOMIZATION_NAMES};

/// Fields that are implemented.
const SUPPORTED: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "bases",
    "components",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "labels",
    "commonLabels",
    "commonAnnotations",
    "images",
    "replicas",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "patches",
    "patchesStrategicMerge",
    "patchesJson6902",
    "sortOptions",
    "buildMetadata",
    "transformers",
    "generators",
    "configurations",
    "crds",
    "replacements",
    "vars",
    "openapi",
];

/// Field names of the nested kustomization structs: kustomize reads every field name without regard to case
/// (`patchesJSON6902`, `configmapgenerator`), so these are matched the same way.
const NESTED: &[&str] = &[
    "pairs",
    "includeSelectors",
    "includeTemplates",
    "fields",
    "name",
    "newName",
    "newTag",
    "digest",
    "tagSuffix",
    "count",
    "namespace",
    "behavior",
    "type",
    "files",
    "literals",
    "envs",
    "env",
    "options",
    "labels",
    "annotations",
    "disableNameSuffixHash",
    "immutable",
    "path",
    "patch",
    "target",
    "group",
    "version",
    "kind",
    "labelSelector",
    "annotationSelector",
    "allowNameChange",
    "allowKindChange",
    "order",
    "legacySortOptions",
    "orderFirst",
    "orderLast",
];

/// Fields kustomize knows that are refused, with the reason given to the operator.
const REFUSED: &[(&str, &str)] = &[
    (
        "helmCharts",
        "Helm charts are not inflated; render the chart into manifests",
    ),
    (
        "helmGlobals",
        "Helm charts are not inflated; render the chart into manifests",
    ),
    (
        "helmChartInflationGenerator",
        "Helm charts are not inflated; render the chart into manifests",
    ),
    ("validators", "plugins are never run"),
    (
        "nameReference",
        "it belongs in a `configurations` file, not in the kustomization itself",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kustomization,
    Component,
}

/// The typed fields of a kustomization.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    pub resources: Vec<String>,
    pub bases: Vec<String>,
    pub components: Vec<String>,
    pub namespace: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    pub labels: Vec<LabelSet>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    pub images: Vec<Image>,
    pub replicas: Vec<Replica>,
    pub config_map_generator: Vec<Generator>,
    pub secret_generator: Vec<Generator>,
    pub generator_options: Option<GeneratorOptions>,
    pub patches: Vec<Patch>,
    pub patches_strategic_merge: Vec<String>,
    pub patches_json6902: Vec<Patch>,
    pub sort_options: Option<SortOptions>,
    pub build_metadata: Vec<String>,
    pub transformers: Vec<String>,
    pub generators: Vec<String>,
    pub configurations: Vec<String>,
    pub crds: Vec<String>,
    pub replacements: Vec<Value>,
    pub vars: Vec<Value>,
    pub openapi: Option<OpenApi>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenApi {
    pub path: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SortOptions {
    pub order: Option<String>,
    pub legacy_sort_options: Option<LegacySortOptions>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LegacySortOptions {
    pub order_first: Vec<String>,
    pub order_last: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LabelSet {
    pub pairs: BTreeMap<String, String>,
    pub include_selectors: bool,
    pub include_templates: bool,
    pub fields: Vec<super::fieldspec::FieldSpec>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Image {
    pub name: String,
    pub new_name: Option<String>,
    pub new_tag: Option<String>,
    pub digest: Option<String>,
    pub tag_suffix: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Replica {
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Generator {
    pub name: String,
    pub namespace: Option<String>,
    pub behavior: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub files: Vec<String>,
    pub literals: Vec<String>,
    pub envs: Vec<String>,
    pub env: Option<String>,
    pub options: Option<GeneratorOptions>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GeneratorOptions {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub disable_name_suffix_hash: Option<bool>,
    pub immutable: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Patch {
    pub path: Option<String>,
    pub patch: Option<String>,
    pub target: Option<Target>,
    pub options: Option<PatchOptions>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PatchOptions {
    pub allow_name_change: bool,
    pub allow_kind_change: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Target {
    pub group: Option<String>,
    pub version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub annotation_selector: Option<String>,
}

/// The kustomization with every field name spelled as kustomize documents it (kustomize ignores case).
fn canonical_keys(raw: serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    let top = SUPPORTED
        .iter()
        .copied()
        .chain(REFUSED.iter().map(|(f, _)| *f))
        .chain(LATER.iter().copied());
    let names: Vec<&str> = top.collect();
    rename_keys(raw, &names, 0)
}

fn rename_keys(
    raw: serde_json::Map<String, Value>,
    names: &[&str],
    depth: usize,
) -> serde_json::Map<String, Value> {
    raw.into_iter()
        .map(|(key, value)| {
            let key = names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(&key))
                .map(|n| n.to_string())
                .unwrap_or(key);
            // Below the top level only struct-valued fields are renamed; maps of labels, annotations and
            // literals hold the user's own keys.
            let nested = depth == 0
                && !matches!(
                    key.as_str(),
                    "commonLabels" | "commonAnnotations" | "metadata"
                );
            let value =
                if nested || matches!(key.as_str(), "target" | "options" | "legacySortOptions") {
                    rename_value(value, depth)
                } else {
                    value
                };
            (key, value)
        })
        .collect()
}

fn rename_value(value: Value, depth: usize) -> Value {
    match value {
        Value::Object(map) if depth < 3 => Value::Object(rename_keys(map, NESTED, depth + 1)),
        Value::Array(items) if depth < 3 => Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(map) => Value::Object(rename_keys(map, NESTED, depth + 1)),
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}

/// Top-level fields matched case-insensitively but handled elsewhere (none yet).
const LATER: &[&str] = &[];

/// A loaded kustomization: where it is, and what it says.
#[derive(Debug)]
pub struct Kustomization {
    /// Repository path of the kustomization file itself (what errors name).
    pub file: String,
    /// Its folder: relative references resolve from here.
    pub dir: String,
    pub kind: Kind,
    pub spec: Spec,
}

/// The kustomization file of a folder, if it has one.
pub fn find<'a>(files: &'a RepoFiles, dir: &str) -> Option<(String, &'a Entry)> {
    KUSTOMIZATION_NAMES.iter().find_map(|name| {
        let path = files::join(dir, name)?;
        files.get(&path).map(|e| (path, e))
    })
}

impl Kustomization {
    pub fn load(files: &RepoFiles, dir: &str) -> Result<Kustomization> {
        let (file, _) = find(files, dir).ok_or_else(|| KustomizeError::Missing {
            file: if dir.is_empty() {
                ".".into()
            } else {
                dir.into()
            },
            reference: "kustomization.yaml".into(),
        })?;
        let name = files::base_name(&file).to_string();
        let bytes = read_entry(files, &name, &file, &file)?;
        let text = std::str::from_utf8(&bytes).map_err(|e| KustomizeError::Invalid {
            file: file.clone(),
            message: format!("not valid UTF-8 (at byte {})", e.valid_up_to()),
        })?;
        let docs = crate::bundle::parse_documents(&file, text)
            .map_err(|e| KustomizeError::Manifest(e.to_string()))?;
        let invalid = |message: String| KustomizeError::Invalid {
            file: file.clone(),
            message,
        };
        let raw = match docs.into_iter().next() {
            Some(Value::Object(map)) => map,
            None => serde_json::Map::new(),
            Some(_) => return Err(invalid("is not a mapping of kustomization fields".into())),
        };
        let raw = canonical_keys(raw);
        for key in raw.keys() {
            if let Some((field, why)) = REFUSED.iter().find(|(f, _)| f == key) {
                return Err(KustomizeError::Unsupported {
                    file: file.clone(),
                    field: field.to_string(),
                    why: why.to_string(),
                });
            }
            if !SUPPORTED.contains(&key.as_str()) {
                return Err(KustomizeError::Unsupported {
                    file: file.clone(),
                    field: key.clone(),
                    why: "unknown kustomization field".into(),
                });
            }
        }
        let kind = match raw.get("kind").and_then(Value::as_str) {
            None | Some("Kustomization") => Kind::Kustomization,
            Some("Component") => Kind::Component,
            Some(other) => {
                return Err(invalid(format!(
                    "kind {other:?} is neither Kustomization nor Component"
                )))
            }
        };
        // A field written with no value (`resources:`) means "none", as in kustomize.
        let raw: serde_json::Map<String, Value> =
            raw.into_iter().filter(|(_, v)| !v.is_null()).collect();
        let spec: Spec = serde_json::from_value(Value::Object(raw)).map_err(|e| {
            invalid(format!(
                "{e}; check the field against the kustomize reference"
            ))
        })?;
        let k = Kustomization {
            file,
            dir: dir.to_string(),
            kind,
            spec,
        };
        Ok(k)
    }

    pub fn invalid(&self, message: String) -> KustomizeError {
        KustomizeError::Invalid {
            file: self.file.clone(),
            message,
        }
    }

    pub fn expect_kind(&self, expect: Kind) -> Result<()> {
        match (expect, self.kind) {
            (Kind::Component, Kind::Kustomization) => Err(self.invalid(
                "is listed under components but is not `kind: Component`; list it under resources"
                    .into(),
            )),
            (Kind::Kustomization, Kind::Component) => {
                Err(self.invalid("is a Component; list it under components, not resources".into()))
            }
            _ => Ok(()),
        }
    }

    /// `resources` then the deprecated `bases` (kustomize v5 still reads both).
    pub fn resources(&self) -> impl Iterator<Item = &String> {
        self.spec.resources.iter().chain(&self.spec.bases)
    }

    /// A reference made repository-relative; remote references and escapes are refused.
    pub fn resolve(&self, reference: &str) -> Result<String> {
        if is_remote(reference) {
            return Err(KustomizeError::Unsupported {
                file: self.file.clone(),
                field: format!("remote resource {reference:?}"),
                why: "remote resources are never fetched; vendor them into the repository or add them as another source".into(),
            });
        }
        files::join(&self.dir, reference).ok_or_else(|| KustomizeError::Escapes {
            file: self.file.clone(),
            reference: reference.into(),
        })
    }

    /// The content of a file this kustomization refers to.
    pub fn read(&self, files: &RepoFiles, reference: &str) -> Result<Vec<u8>> {
        let path = self.resolve(reference)?;
        // kustomize's default load restriction: a kustomization reads files in or below its own folder only
        // (other kustomizations, as folders, may be anywhere in the repository).
        let inside =
            self.dir.is_empty() || path == self.dir || path.starts_with(&format!("{}/", self.dir));
        if !inside {
            return Err(KustomizeError::Invalid {
                file: self.file.clone(),
                message: format!("{reference:?} is outside this kustomization's folder; kustomize only reads files in or below it (list the folder holding it as a resource, or move the file)"),
            });
        }
        read_entry(files, reference, &path, &self.file)
    }
}

fn read_entry(files: &RepoFiles, reference: &str, path: &str, file: &str) -> Result<Vec<u8>> {
    match files.get(path) {
        Some(Entry::File(bytes)) => Ok(bytes.clone()),
        Some(Entry::TooBig(size)) => Err(KustomizeError::TooBig {
            file: file.into(),
            reference: reference.into(),
            size: *size,
            limit: files.max_file_size(),
        }),
        Some(Entry::Link(_)) => Err(KustomizeError::Symlink {
            file: file.into(),
            reference: reference.into(),
        }),
        Some(Entry::Refused(reason)) => Err(KustomizeError::Refused {
            file: file.into(),
            reason: reason.clone(),
        }),
        Some(Entry::Dir) => Err(KustomizeError::Invalid {
            file: file.into(),
            message: format!("{reference:?} is a folder, a file is needed here"),
        }),
        None => Err(KustomizeError::Missing {
            file: file.into(),
            reference: reference.into(),
        }),
    }
}

fn is_remote(reference: &str) -> bool {
    reference.contains("://")
        || reference.starts_with("git@")
        || reference.starts_with("github.com/")
        || reference.starts_with("gitlab.com/")
        || reference.starts_with("bitbucket.org/")
}
