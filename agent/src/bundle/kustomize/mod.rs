//! Kustomize-compatible builds: a folder holding `kustomization.yaml` becomes the objects `kustomize build` (v5)
//! would print for it.
//!
//! The build is a plain function over a [`RepoFiles`] snapshot. Each kustomization accumulates its resources
//! (files, and other kustomizations built first), runs its generators, applies its components and then runs its
//! transformers in kustomize's fixed order. Three steps run once, at the top, as in kustomize: generated names
//! get their content hash, every name reference is updated to the final name of the object it means, and
//! local-config objects are left out. Every field kustomize knows and Outpost does not implement is refused with
//! the field and the file named: never silently ignored.

mod builtin;
mod config;
mod crds;
mod fieldspec;
mod generators;
mod images;
mod jsonpatch;
mod labels;
mod load;
mod metadata;
mod nameref;
mod names;
mod objects;
mod order;
mod patches;
mod problem;
mod refs;
mod replacements;
mod selector;
mod smp;
mod transform;
mod valueadd;
mod vars;

use serde_json::Value;

use crate::revision::{files, Entry, RepoFiles, KUSTOMIZATION_NAMES};

use crate::config::Limits;
use config::TransformerConfig;
use load::{Kind, Kustomization};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KustomizeError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("{file}: `{field}` is not supported by Outpost ({why}); remove it, or build the manifests before committing them")]
    Unsupported {
        file: String,
        field: String,
        why: String,
    },
    #[error("{file}: {reference:?} points outside the repository; a kustomization may only use files of its own repository")]
    Escapes { file: String, reference: String },
    #[error("{file}: {reference:?} does not exist in this revision; fix the path")]
    Missing { file: String, reference: String },
    #[error("{file}: {reference:?} is a symlink; symlinks are never followed, replace it with the file itself")]
    Symlink { file: String, reference: String },
    /// A file the build needs that could not be read as written; `reason` names it and says what to do.
    #[error("{file}: {reason}")]
    Refused { file: String, reason: String },
    #[error("{file}: {reference:?} is {size} bytes, over the {limit} byte limit; split it, or raise [agent] max_file_size")]
    TooBig {
        file: String,
        reference: String,
        size: u64,
        limit: u64,
    },
    #[error(
        "{file}: kustomizations include each other in a cycle: {chain}; remove one of these references"
    )]
    Cycle { file: String, chain: String },
    #[error("{file}: patch {index}: {message}")]
    Patch {
        file: String,
        index: usize,
        message: String,
    },
    #[error("{file}: {id} is defined twice (in {first} and {second}); keep one")]
    Duplicate {
        file: String,
        id: String,
        first: String,
        second: String,
    },
    #[error("{0}")]
    Manifest(String),
    #[error(
        "the build has more than {limit} objects; split the source or raise [agent] max_objects"
    )]
    TooManyObjects { limit: usize },
}

type Result<T> = std::result::Result<T, KustomizeError>;

/// One object during the build, with what the transformers need to remember about it.
#[derive(Debug, Clone)]
pub(crate) struct Res {
    pub obj: Value,
    /// Earlier `(namespace, name)` pairs, oldest first: patches and references written against any of them still
    /// find the object after a prefix or a namespace changed it.
    pub prev: Vec<(String, String)>,
    /// Generated ConfigMaps and Secrets get `-<hash of content>` appended, once, at the end of the build.
    pub hash: bool,
    /// Where the object came from, for error messages.
    pub origin: String,
    /// Where it came from, for buildMetadata's originAnnotations.
    pub from: Option<Origin>,
    /// (kustomization file, transformer) of every transformer that changed names or namespaces over it, for
    /// buildMetadata's transformerAnnotations.
    pub transformations: Vec<(String, Value)>,
    /// kustomize's record of earlier identities, prefixes and suffixes, for the name reference transformer.
    pub lineage: nameref::Lineage,
    /// Unique within a build: what a var's objref is tied to.
    pub uid: u64,
    /// Earlier kinds (a patch allowed to change the kind): a later patch may still name the original.
    pub prev_kinds: Vec<String>,
}

/// A resource file, or the generator (its kustomization file and configuration) that made the object.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    File(String),
    Generator { file: String, by: Value },
}

impl Res {
    pub fn new(obj: Value, origin: String) -> Res {
        Res {
            obj,
            prev: Vec::new(),
            hash: false,
            origin,
            from: None,
            transformations: Vec::new(),
            lineage: Default::default(),
            prev_kinds: Vec::new(),
            uid: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

    pub fn kind(&self) -> &str {
        self.obj.get("kind").and_then(Value::as_str).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn namespace(&self) -> &str {
        self.obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn api_version(&self) -> &str {
        self.obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }
    pub fn version(&self) -> &str {
        let v = self.api_version();
        v.rsplit_once('/').map(|(_, v)| v).unwrap_or(v)
    }
    /// True when `name` is the current or any earlier name.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name() == name || self.prev.iter().any(|(_, n)| n == name)
    }
    /// Sets a metadata field, remembering the old identity.
    pub fn rename(&mut self, namespace: Option<&str>, name: Option<&str>) {
        let old = (self.namespace().to_string(), self.name().to_string());
        if let Some(meta) = metadata(&mut self.obj) {
            if let Some(ns) = namespace {
                meta.insert("namespace".into(), Value::String(ns.into()));
            }
            if let Some(n) = name {
                meta.insert("name".into(), Value::String(n.into()));
            }
        }
        if (self.namespace(), self.name()) != (old.0.as_str(), old.1.as_str()) {
            self.prev.push(old);
        }
    }
}

/// The object's metadata map, created when missing.
pub(crate) fn metadata(obj: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if !meta.is_object() {
        *meta = Value::Object(Default::default());
    }
    meta.as_object_mut()
}

struct Ctx<'a> {
    files: &'a RepoFiles,
    limits: &'a Limits,
    /// `vars` of every kustomization built so far; resolved once at the end.
    vars: std::cell::RefCell<vars::Declared>,
}

/// The repository path of the kustomization file in folder `dir`, if there is one.
pub fn find_kustomization(files: &RepoFiles, dir: &str) -> Option<String> {
    load::find(files, dir).map(|(f, _)| f)
}

/// Builds the kustomization in folder `root` (repository-relative) into objects in kustomize's output order.
pub fn build(files: &RepoFiles, root: &str, limits: &Limits) -> Result<Vec<Value>> {
    let ctx = Ctx {
        files,
        limits,
        vars: Default::default(),
    };
    let mut chain = Vec::new();
    // A Component folder built directly is built like a kustomization, as kustomize does.
    let mut resources = Vec::new();
    let top = Kustomization::load(files, root)?;
    let mut config = TransformerConfig::default();
    apply(
        &ctx,
        root,
        &mut chain,
        &mut resources,
        top.kind,
        &mut config,
    )?;
    refs::add_hashes(&mut resources);
    nameref::fix_references(&mut resources, &config)?;
    let declared = ctx.vars.into_inner();
    if !declared.is_empty() {
        declared.resolve(&mut resources, &config)?;
    }
    for r in resources.iter_mut() {
        labels::stringify_metadata(&mut r.obj);
    }
    // Objects marked local-config served the build (as sources of replacements or name references) and are
    // not part of its output, as in kustomize; only the value "false" keeps one.
    resources.retain(|r| {
        r.obj
            .pointer("/metadata/annotations/config.kubernetes.io~1local-config")
            .is_none_or(|v| v.as_str() == Some("false"))
    });
    let objects = order::sort(&top, resources.into_iter().map(|r| r.obj).collect())?;
    if objects.len() > limits.max_objects {
        return Err(KustomizeError::TooManyObjects {
            limit: limits.max_objects,
        });
    }
    Ok(objects)
}

/// Builds a folder of transformer or generator configs (a `transformers:` entry naming a kustomization): its
/// objects as listed, without hashes or sorting.
fn build_configs(files: &RepoFiles, root: &str, limits: &Limits) -> Result<Vec<Value>> {
    let ctx = Ctx {
        files,
        limits,
        vars: Default::default(),
    };
    let mut acc = Vec::new();
    let mut config = TransformerConfig::default();
    apply(
        &ctx,
        root,
        &mut Vec::new(),
        &mut acc,
        Kind::Kustomization,
        &mut config,
    )?;
    Ok(acc.into_iter().map(|r| r.obj).collect())
}

/// Builds one kustomization (not a component) into a fresh list; its transformer configuration (with
/// `configurations`) joins the caller's.
fn build_dir(
    ctx: &Ctx,
    dir: &str,
    chain: &mut Vec<String>,
    config: &mut TransformerConfig,
) -> Result<Vec<Res>> {
    let mut acc = Vec::new();
    let mut own = TransformerConfig::default();
    apply(ctx, dir, chain, &mut acc, Kind::Kustomization, &mut own)?;
    config.merge(&own);
    Ok(acc)
}

/// Runs the kustomization in `dir` over `acc`: its resources are added, then its generators, components and
/// transformers act on everything accumulated so far (for a component, that includes its parent's resources).
fn apply(
    ctx: &Ctx,
    dir: &str,
    chain: &mut Vec<String>,
    acc: &mut Vec<Res>,
    expect: Kind,
    config: &mut TransformerConfig,
) -> Result<()> {
    if let Some(at) = chain.iter().position(|d| d == dir) {
        let mut cycle: Vec<String> = chain[at..]
            .iter()
            .map(|d| if d.is_empty() { ".".into() } else { d.clone() })
            .collect();
        cycle.push(if dir.is_empty() {
            ".".into()
        } else {
            dir.into()
        });
        // The kustomization that closes the cycle is the one to name.
        let last = chain.last().map(String::as_str).unwrap_or(dir);
        let file = load::find(ctx.files, last)
            .map(|(f, _)| f)
            .unwrap_or_else(|| last.to_string());
        return Err(KustomizeError::Cycle {
            file,
            chain: cycle.join(" -> "),
        });
    }
    let k = Kustomization::load(ctx.files, dir)?;
    k.expect_kind(expect)?;
    ctx.vars.borrow_mut().add(&k.file, &k.spec.vars)?;
    chain.push(dir.to_string());
    let mut seen = Seen::of(acc)?;
    for reference in k.resources() {
        let path = k.resolve(reference)?;
        match ctx.files.get(&path) {
            Some(Entry::Dir) => {
                if load::find(ctx.files, &path).is_none() {
                    return Err(KustomizeError::Invalid {
                        file: k.file.clone(),
                        message: format!("resource {reference:?} is a folder without a kustomization.yaml; list its files instead, or add a kustomization there"),
                    });
                }
                for r in build_dir(ctx, &path, chain, config)? {
                    seen.add(acc, r, &k.file)?;
                }
            }
            _ => {
                let bytes = k.read(ctx.files, reference)?;
                for r in objects::read(&path, &bytes)? {
                    seen.add(acc, r, &k.file)?;
                }
            }
        }
        if acc.len() > ctx.limits.max_objects {
            return Err(KustomizeError::TooManyObjects {
                limit: ctx.limits.max_objects,
            });
        }
    }
    // The configurations of the resources' kustomizations come first, then this one's own (its `configurations`
    // and `crds`, then the defaults), as kustomize accumulates them.
    config.merge(&TransformerConfig::own(&config::custom(ctx.files, &k)?));
    if let Some(openapi) = &k.spec.openapi {
        // `openapi.version` picks a built-in schema: the kustomization gives up its bases' custom one.
        config.openapi = load_openapi(ctx.files, &k, openapi)?.map(std::sync::Arc::new);
    }
    generators::run(ctx.files, &k, acc)?;
    builtin::generate(ctx.files, &k, acc)?;
    // Components come after the kustomization's own generators (kustomize v5.5), so a component's transformers
    // reach the objects they generate, and a component's generator may merge into them.
    for reference in &k.spec.components {
        let path = k.resolve(reference)?;
        if !matches!(ctx.files.get(&path), Some(Entry::Dir))
            || load::find(ctx.files, &path).is_none()
        {
            return Err(KustomizeError::Invalid {
                file: k.file.clone(),
                message: format!("component {reference:?} is not a folder holding a kustomization.yaml with kind: Component"),
            });
        }
        apply(ctx, &path, chain, acc, Kind::Component, config)?;
    }
    transform::run(ctx.files, &k, config, acc)?;
    metadata::annotate(&k, acc)?;
    ctx.vars.borrow_mut().bind(&k.file, acc)?;
    chain.pop();
    Ok(())
}

/// A kustomization's `openapi` schema file (JSON or YAML); remote schemas are never fetched.
fn load_openapi(
    files: &RepoFiles,
    k: &Kustomization,
    o: &load::OpenApi,
) -> Result<Option<smp::Schema>> {
    let Some(path) = &o.path else {
        // kustomize v5.5 carries one built-in schema, v1.21.2 (Outpost uses the API server's v1.32 merge keys,
        // which agree on the kinds both know).
        return match o.version.as_deref() {
            None | Some("v1.21.2") => Ok(None),
            Some(other) => Err(k.invalid(format!(
                "openapi.version {other:?}: the specified OpenAPI version is not built in (kustomize has v1.21.2); remove it, or give a schema file as openapi.path"
            ))),
        };
    };
    let file = k.resolve(path)?;
    let bytes = k.read(files, path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| k.invalid(format!("openapi.path {path:?} is not UTF-8")))?;
    let doc = crate::bundle::parse_documents(&file, &text)
        .map_err(|e| KustomizeError::Manifest(e.to_string()))?
        .into_iter()
        .next()
        .unwrap_or(Value::Null);
    if doc.get("definitions").is_none_or(|d| !d.is_object()) {
        return Err(KustomizeError::Invalid {
            file,
            message: "not an OpenAPI v2 schema: it has no `definitions` map".into(),
        });
    }
    Ok(Some(smp::Schema::from_openapi(&doc)))
}

/// Identities already accumulated: kustomize refuses a second object with the same identity.
struct Seen(std::collections::HashMap<String, String>);

impl Seen {
    fn of(acc: &[Res]) -> Result<Seen> {
        let mut map = std::collections::HashMap::new();
        for r in acc {
            map.insert(id_of(r)?, r.origin.clone());
        }
        Ok(Seen(map))
    }

    fn add(&mut self, acc: &mut Vec<Res>, r: Res, file: &str) -> Result<()> {
        let id = id_of(&r)?;
        if let Some(first) = self.0.get(&id) {
            if *first == r.origin {
                return Err(KustomizeError::Invalid {
                    file: file.to_string(),
                    message: format!(
                        "{id} ({first}) arrives twice, through two of the resources listed here that both include it; include it once (kustomize refuses this too)"
                    ),
                });
            }
            return Err(KustomizeError::Duplicate {
                file: file.to_string(),
                id,
                first: first.clone(),
                second: r.origin,
            });
        }
        self.0.insert(id, r.origin.clone());
        acc.push(r);
        Ok(())
    }
}

/// The object's identity; kustomize passes an object without `apiVersion` through (as a core object), so only
/// a kind and a name are required here.
fn id_of(r: &Res) -> Result<String> {
    if r.api_version().is_empty() && !r.kind().is_empty() && !r.name().is_empty() {
        let ns = r.namespace();
        return Ok(if ns.is_empty() {
            format!("{} {}", r.kind(), r.name())
        } else {
            format!("{} {ns}/{}", r.kind(), r.name())
        });
    }
    crate::bundle::identity(&r.obj).map_err(|m| KustomizeError::Invalid {
        file: r.origin.clone(),
        message: m.to_string(),
    })
}

#[cfg(test)]
mod tests;
