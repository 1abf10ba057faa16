//! The build stage: manifest files of one revision -> a [`Bundle`], the ordered list of Kubernetes objects that
//! a target applies, with a digest of its content.
//!
//! Pure and synchronous. A bundle is all or nothing: one bad document fails the whole revision, so a target never
//! sees half of a commit. Order is stable (files by path, documents in file order) so the same commit always gives
//! the same bundle and the same digest.

use std::collections::BTreeMap;

pub mod kustomize;
mod octal;
pub mod substitute;
pub mod yaml;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Limits;
use crate::revision::{ManifestFile, Manifests};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("{file}: not valid UTF-8 (at byte {offset}); save the file as UTF-8")]
    NotUtf8 { file: String, offset: usize },
    #[error("{file}{at}: malformed YAML: {message}")]
    Yaml {
        file: String,
        at: String,
        message: String,
    },
    #[error("{file}: malformed JSON at line {line}, column {column}: {message}")]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}, document {document}: {message}")]
    Invalid {
        file: String,
        document: usize,
        message: String,
    },
    #[error("{id} is defined twice: in {first} and in {second}; keep one")]
    Duplicate {
        id: String,
        first: String,
        second: String,
    },
    #[error(
        "the bundle has more than {limit} objects; split the source or raise [agent] max_objects"
    )]
    TooManyObjects { limit: usize },
    #[error("{file}: {message}")]
    Budget { file: String, message: String },
    #[error(transparent)]
    Kustomize(#[from] kustomize::KustomizeError),
    #[error(transparent)]
    Substitute(#[from] substitute::SubstituteError),
    #[error("{object}: after variable substitution {problem}; fix the variable or its value, or annotate the object outpost.dev/substitute: disabled")]
    SubstitutedIdentity { object: String, problem: String },
    #[error(
        "no manifests found (no *.yaml, *.yml or *.json files under the source's path); check path"
    )]
    Empty,
    #[error("the {files} manifest file(s) under the source's path hold no objects (only comments or empty documents); an empty bundle would prune everything this source applied, so it is refused: add objects, or remove the source to delete them")]
    NoObjects { files: usize },
    #[error("{file} builds to no objects (its resources, generators and components produce nothing); an empty bundle would prune everything this source applied, so it is refused: add resources, or remove the source to delete them")]
    EmptyKustomization { file: String },
}

/// What a target applies: objects in apply order, and a digest over their content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub objects: Vec<Value>,
    /// `sha256:<hex>` over the canonical JSON of every object, in order.
    pub digest: String,
}

impl Bundle {
    pub fn new(objects: Vec<Value>) -> Bundle {
        let digest = digest_of(&objects);
        Bundle { objects, digest }
    }
}

/// Builds a revision: its kustomization if the source's path holds one, else its plain manifest files; then
/// substitutes variables when the source opted in (`vars` is `Some`).
pub fn build_revision(
    manifests: &Manifests,
    vars: Option<&BTreeMap<String, String>>,
    limits: &Limits,
) -> Result<Bundle, BuildError> {
    let mut objects = match &manifests.kustomization {
        Some(k) => {
            let objects = kustomize::build(&k.files, &k.root, limits)?;
            if objects.is_empty() {
                let file = kustomize::find_kustomization(&k.files, &k.root)
                    .unwrap_or_else(|| format!("{}/kustomization.yaml", k.root));
                return Err(BuildError::EmptyKustomization { file });
            }
            objects
        }
        None => build(&manifests.files, limits)?.objects,
    };
    let Some(vars) = vars else {
        return Ok(Bundle::new(objects));
    };
    let before: Vec<String> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| identity(o).unwrap_or_else(|_| format!("object {}", i + 1)))
        .collect();
    substitute::apply(&mut objects, vars)?;
    check_substituted_identities(&objects, &before)?;
    Ok(Bundle::new(objects))
}

/// The identities were checked on the objects as written, but a `${var}` in `metadata.name` (or `namespace`,
/// `kind`, `apiVersion`) can still turn one into a number, an empty string or another object's name. A target
/// keys everything by identity, so such a bundle would apply one object over another or fail half-way at the API
/// server; refuse it whole, naming the object as the operator wrote it.
fn check_substituted_identities(objects: &[Value], before: &[String]) -> Result<(), BuildError> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (object, written) in objects.iter().zip(before) {
        let id = identity(object).map_err(|e| BuildError::SubstitutedIdentity {
            object: written.clone(),
            problem: e.to_string(),
        })?;
        if let Some(first) = seen.insert(id.clone(), written) {
            return Err(BuildError::SubstitutedIdentity {
                object: written.clone(),
                problem: format!("it is {id}, the same object as {first}"),
            });
        }
    }
    Ok(())
}

/// Builds a bundle from a revision's manifest files (already in a stable order), without substitution.
pub fn build(files: &[ManifestFile], limits: &Limits) -> Result<Bundle, BuildError> {
    let mut objects = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for file in files {
        let text = std::str::from_utf8(&file.content).map_err(|e| BuildError::NotUtf8 {
            file: file.path.clone(),
            offset: e.valid_up_to(),
        })?;
        // Documents are counted against max_objects while the file is read, before their values are built.
        let left = limits.max_objects.saturating_sub(objects.len());
        let docs = yaml::parse_documents(&file.path, text, left).map_err(|e| match e {
            BuildError::TooManyObjects { .. } => BuildError::TooManyObjects {
                limit: limits.max_objects,
            },
            e => e,
        })?;
        for (index, doc) in docs.into_iter().enumerate() {
            let document = index + 1;
            for object in flatten(doc, &file.path, document)? {
                let id = identity(&object).map_err(|e| BuildError::Invalid {
                    file: file.path.clone(),
                    document,
                    message: e.to_string(),
                })?;
                let place = format!("{}, document {document}", file.path);
                if let Some(first) = seen.insert(id.clone(), place.clone()) {
                    return Err(BuildError::Duplicate {
                        id,
                        first,
                        second: place,
                    });
                }
                objects.push(object);
                if objects.len() > limits.max_objects {
                    return Err(BuildError::TooManyObjects {
                        limit: limits.max_objects,
                    });
                }
            }
        }
    }
    if objects.is_empty() {
        return Err(if files.is_empty() {
            BuildError::Empty
        } else {
            BuildError::NoObjects { files: files.len() }
        });
    }
    Ok(Bundle::new(objects))
}

/// Parses every document of a file within its memory budget (see [`yaml`]); empty documents are skipped.
pub(crate) fn parse_documents(path: &str, text: &str) -> Result<Vec<Value>, BuildError> {
    yaml::parse_documents(path, text, usize::MAX)
}

/// YAML 1.1 octal values rewritten as the parser sees them; for the fuzz targets' checks.
#[doc(hidden)]
pub fn octal_rewrite(text: &str) -> std::borrow::Cow<'_, str> {
    octal::rewrite(text)
}

/// `kind: List` (and `*List` kinds as kubectl writes them) are unpacked into their items.
pub(crate) fn flatten(doc: Value, file: &str, document: usize) -> Result<Vec<Value>, BuildError> {
    let invalid = |message: String| BuildError::Invalid {
        file: file.to_string(),
        document,
        message,
    };
    if !doc.is_object() {
        return Err(invalid(
            "is not a mapping; each document must be one Kubernetes object".into(),
        ));
    }
    // `kind: List`, and the typed lists kubectl writes (`PodList`, `ConfigMapList`) when they hold `items`.
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let is_list = (kind == "List" && doc.get("items").is_some())
        || (kind.ends_with("List") && doc.get("items").is_some_and(Value::is_array));
    if !is_list {
        return Ok(vec![doc]);
    }
    match doc.get("items") {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_object() {
                    return Err(invalid(format!("List item {} is not an object", i + 1)));
                }
            }
            let Some(Value::Array(items)) = doc.get("items").cloned() else {
                unreachable!("matched above")
            };
            Ok(items)
        }
        Some(Value::Null) => Ok(Vec::new()),
        _ => Err(invalid("kind List needs `items` to be a list".into())),
    }
}

/// An object that lacks what makes it an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoIdentity {
    #[error("has no apiVersion; every object needs apiVersion, kind and metadata.name")]
    ApiVersion,
    #[error("has no kind; every object needs apiVersion, kind and metadata.name")]
    Kind,
    #[error("{0} has no metadata.name; every object needs apiVersion, kind and metadata.name")]
    Name(String),
}

/// `group/kind namespace/name`: what makes two objects the same object in a cluster. The version is left out on
/// purpose: `apps/v1` and `apps/v1beta1` Deployments of one name are one object.
pub fn identity(object: &Value) -> Result<String, NoIdentity> {
    let field = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let api_version = field("apiVersion").ok_or(NoIdentity::ApiVersion)?;
    let kind = field("kind").ok_or(NoIdentity::Kind)?;
    let metadata = object.get("metadata").filter(|m| m.is_object());
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| NoIdentity::Name(kind.to_string()))?;
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let gk = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{group}/{kind}")
    };
    Ok(if namespace.is_empty() {
        format!("{gk} {name}")
    } else {
        format!("{gk} {namespace}/{name}")
    })
}

/// sha-256 over the canonical JSON (sorted keys, no spaces) of each object, one per line.
pub fn digest_of(objects: &[Value]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for o in objects {
        let mut buf = Vec::new();
        write_canonical(o, &mut buf);
        ctx.update(&buf);
        ctx.update(b"\n");
    }
    format!("sha256:{}", hex(ctx.finish().as_ref()))
}

/// What the hub compares to know exactly what runs: sha-256 over the sorted lines `<identity> <object digest>`
/// of the applied objects. Unlike the bundle digest it ignores order, so the same objects applied from files
/// laid out differently give the same inventory.
pub fn inventory_digest(objects: &[Value]) -> String {
    let mut lines: Vec<String> = objects
        .iter()
        .map(|o| {
            let mut buf = Vec::new();
            write_canonical(o, &mut buf);
            let object = ring::digest::digest(&ring::digest::SHA256, &buf);
            let id = identity(o).unwrap_or_else(|_| "?".into());
            format!("{id} {}", hex(object.as_ref()))
        })
        .collect();
    lines.sort();
    let joined = lines.join("\n");
    format!(
        "sha256:{}",
        hex(ring::digest::digest(&ring::digest::SHA256, joined.as_bytes()).as_ref())
    )
}

/// Canonical form independent of how the map was built (serde_json may preserve insertion order).
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String((*k).clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(&map[k.as_str()], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
