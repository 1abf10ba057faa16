//! `patches`, `patchesStrategicMerge` and `patchesJson6902`: loading each patch, finding its targets, applying it.
//!
//! As in kustomize: a strategic merge patch without a target must match an object (by its own kind, name and
//! namespace) or the build fails; a patch with a `target` that matches nothing changes nothing.

use serde_json::Value;

use super::files::RepoFiles;
use super::load::{Kustomization, Patch, PatchOptions, Target};
use super::problem::Problem;
use super::selector::{self, Requirement};
use super::smp::Schema;
use super::{jsonpatch, smp, KustomizeError, Res, Result};

/// What a patch entry holds once parsed.
enum Body {
    Strategic(Vec<Value>),
    Json(Vec<Value>),
}

pub fn strategic_merge(
    files: &RepoFiles,
    k: &Kustomization,
    entries: &[String],
    acc: &mut Vec<Res>,
    schema: Option<&Schema>,
) -> Result<()> {
    for (i, entry) in entries.iter().enumerate() {
        let index = i + 1;
        let field = format!("patchesStrategicMerge[{i}]");
        let text = if entry.contains('\n') || entry.trim_start().starts_with('{') {
            entry.clone()
        } else {
            read_text(files, k, entry, index)?
        };
        match parse(k, &text, index, &field)? {
            Body::Strategic(docs) => {
                for doc in docs {
                    if is_delete(&doc) {
                        acc.retain(|r| !same_object(&doc, r));
                        continue;
                    }
                    apply_by_own_id(k, &doc, acc, index, schema)?;
                }
            }
            Body::Json(_) => {
                return Err(patch_error(
                    k,
                    index,
                    format!("{field} is a JSON patch; list it under patches with a target"),
                ))
            }
        }
    }
    Ok(())
}

pub fn patches(
    files: &RepoFiles,
    k: &Kustomization,
    list: &[Patch],
    field: &str,
    acc: &mut Vec<Res>,
    schema: Option<&Schema>,
) -> Result<()> {
    for (i, p) in list.iter().enumerate() {
        apply_entry(files, k, p, acc, i, field, schema)?;
    }
    Ok(())
}

pub fn json6902(
    files: &RepoFiles,
    k: &Kustomization,
    list: &[Patch],
    acc: &mut Vec<Res>,
) -> Result<()> {
    for (i, p) in list.iter().enumerate() {
        if p.target.is_none() {
            return Err(patch_error(
                k,
                i + 1,
                format!("patchesJson6902[{i}] has no target; say which object it changes"),
            ));
        }
        apply_entry(files, k, p, acc, i, "patchesJson6902", None)?;
    }
    Ok(())
}

fn apply_entry(
    files: &RepoFiles,
    k: &Kustomization,
    p: &Patch,
    acc: &mut Vec<Res>,
    i: usize,
    list: &str,
    schema: Option<&Schema>,
) -> Result<()> {
    let index = i + 1;
    let field = format!("{list}[{i}]");
    let text = match (&p.path, &p.patch) {
        (Some(path), None) => read_text(files, k, path, index)?,
        (None, Some(inline)) => inline.clone(),
        _ => {
            return Err(patch_error(
                k,
                index,
                format!("{field} needs exactly one of `path` and `patch`"),
            ))
        }
    };
    let body = parse(k, &text, index, &field)?;
    if let Body::Strategic(docs) = &body {
        if docs.iter().any(is_delete) {
            // `$patch: delete` on a whole object removes the objects it names (or its target).
            let doc = &docs[0];
            let before = acc.len();
            acc.retain(|r| match &p.target {
                Some(t) => !Matcher::new(t).is_ok_and(|m| m.matches(r)),
                None => !same_object(doc, r),
            });
            if acc.len() == before && p.target.is_none() {
                return Err(patch_error(
                    k,
                    index,
                    format!("{field}: no object matches this `$patch: delete`"),
                ));
            }
            return Ok(());
        }
    }
    let options = p.options.clone().unwrap_or_default();
    let Some(target) = &p.target else {
        return match body {
            Body::Strategic(docs) => {
                for doc in docs {
                    apply_by_own_id(k, &doc, acc, index, schema)?;
                }
                Ok(())
            }
            Body::Json(_) => Err(patch_error(
                k,
                index,
                format!("{field} is a JSON patch without a target; add target (kind, name)"),
            )),
        };
    };
    let matcher = Matcher::new(target).map_err(|m| patch_error(k, index, m.to_string()))?;
    // With a target, the patch's own name and namespace are placeholders: they never rename what it patches,
    // unless its options allow a new name (or kind).
    for r in acc.iter_mut().filter(|r| matcher.matches(r)) {
        // kustomize records the identity before a JSON patch of `patches` (the legacy patchesJson6902 does not)
        // and before a strategic merge patch allowed to rename or re-kind.
        let records = match &body {
            Body::Json(_) => list != "patchesJson6902",
            Body::Strategic(_) => options.allow_name_change || options.allow_kind_change,
        };
        if records {
            r.store_previous_id();
        }
        let (old_kind, old_name) = (r.kind().to_string(), r.name().to_string());
        match &body {
            Body::Strategic(docs) => {
                for doc in docs {
                    let (group, kind) = (r.group().to_string(), r.kind().to_string());
                    let mut doc = if options.allow_name_change {
                        doc.clone()
                    } else {
                        without_identity(doc.clone())
                    };
                    if !options.allow_kind_change {
                        if let Some(m) = doc.as_object_mut() {
                            m.remove("kind");
                            m.remove("apiVersion");
                        }
                    }
                    smp::merge_with(&mut r.obj, &doc, &group, &kind, schema);
                }
            }
            Body::Json(ops) => jsonpatch::apply(&mut r.obj, ops).map_err(|m| {
                patch_error(
                    k,
                    index,
                    format!("{field} on {} {}: {m}", r.kind(), r.name()),
                )
            })?,
        }
        // A JSON patch says exactly what it changes: a new name or kind is kept. A strategic merge patch's
        // name is a placeholder unless its options allow a change.
        let allowed = match body {
            Body::Json(_) => PatchOptions {
                allow_name_change: true,
                allow_kind_change: true,
            },
            Body::Strategic(_) => options.clone(),
        };
        keep_identity(r, &old_kind, &old_name, &allowed);
    }
    Ok(())
}

/// A targeted patch keeps the target's kind and name unless its options allow a change; an allowed rename is
/// remembered, so references follow it.
fn keep_identity(r: &mut Res, old_kind: &str, old_name: &str, options: &PatchOptions) {
    if r.kind() != old_kind {
        if options.allow_kind_change {
            r.prev_kinds.push(old_kind.to_string());
        } else if let Some(m) = r.obj.as_object_mut() {
            m.insert("kind".into(), Value::String(old_kind.into()));
        }
    }
    if r.name() != old_name {
        let new = r.name().to_string();
        if let Some(meta) = super::metadata(&mut r.obj) {
            meta.insert("name".into(), Value::String(old_name.into()));
        }
        if options.allow_name_change {
            r.rename(None, Some(&new));
        }
    }
}

fn is_delete(doc: &Value) -> bool {
    doc.get("$patch").and_then(Value::as_str) == Some("delete")
}

fn same_object(doc: &Value, r: &Res) -> bool {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str);
    r.kind() == kind && r.answers_to(name) && namespace.is_none_or(|ns| r.namespace() == ns)
}

fn read_text(files: &RepoFiles, k: &Kustomization, path: &str, index: usize) -> Result<String> {
    let bytes = k.read(files, path)?;
    String::from_utf8(bytes).map_err(|_| patch_error(k, index, format!("{path:?} is not UTF-8")))
}

fn patch_error(k: &Kustomization, index: usize, message: String) -> KustomizeError {
    KustomizeError::Patch {
        file: k.file.clone(),
        index,
        message,
    }
}

/// A list document is a JSON patch; mappings are strategic merge patches.
fn parse(k: &Kustomization, text: &str, index: usize, field: &str) -> Result<Body> {
    let docs = crate::bundle::parse_documents(&format!("{} {field}", k.file), text)
        .map_err(|e| patch_error(k, index, format!("malformed patch: {e}")))?;
    match docs.as_slice() {
        [Value::Array(ops)] => {
            if let Some(bad) = ops.iter().position(|o| !o.is_object()) {
                return Err(patch_error(
                    k,
                    index,
                    format!(
                        "{field}: JSON patch operation {} is not a mapping with op and path",
                        bad + 1
                    ),
                ));
            }
            Ok(Body::Json(ops.clone()))
        }
        [] => Err(patch_error(k, index, format!("{field} is empty"))),
        docs => {
            if docs.iter().any(|d| !d.is_object()) {
                return Err(patch_error(
                    k,
                    index,
                    format!("{field} is neither a mapping (strategic merge) nor a list of operations (JSON patch)"),
                ));
            }
            Ok(Body::Strategic(docs.to_vec()))
        }
    }
}

/// A strategic merge patch names its object itself: kind, name and (optionally) namespace.
fn apply_by_own_id(
    k: &Kustomization,
    doc: &Value,
    acc: &mut [Res],
    index: usize,
    schema: Option<&Schema>,
) -> Result<()> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if kind.is_empty() || name.is_empty() {
        return Err(patch_error(
            k,
            index,
            "a strategic merge patch without a target needs kind and metadata.name".into(),
        ));
    }
    let namespace = doc.pointer("/metadata/namespace").and_then(Value::as_str);
    let group = doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|a| a.rsplit_once('/'))
        .map(|(g, _)| g)
        .unwrap_or("");
    // After a kind change only the current and the original kind-and-name pairs identify the object.
    let same_id = |r: &Res| {
        if r.prev_kinds.is_empty() {
            r.kind() == kind && r.answers_to(name)
        } else {
            (r.kind() == kind && r.name() == name)
                || (r.prev_kinds.first().map(String::as_str) == Some(kind)
                    && r.prev.first().map(|(_, n)| n.as_str()) == Some(name))
        }
    };
    let in_ns = |r: &Res| {
        same_id(r)
            && r.group() == group
            && namespace.is_none_or(|ns| r.namespace() == ns || r.prev.iter().any(|(n, _)| n == ns))
    };
    // The object called so now or before; two candidates are ambiguous, as in kustomize.
    let hits: Vec<usize> = (0..acc.len()).filter(|&i| in_ns(&acc[i])).collect();
    let target = format!(
        "{kind} {}{name}",
        namespace.map(|n| format!("{n}/")).unwrap_or_default()
    );
    match hits.as_slice() {
        [] => {
            return Err(patch_error(
                k,
                index,
                format!(
                    "no object matches this strategic merge patch ({target}); check its kind, name and namespace, or give it a target"
                ),
            ))
        }
        [i] => {
            // The patch's own name, namespace and kind identify the target; they must not change it.
            let mut patch = without_identity(doc.clone());
            if let Some(m) = patch.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            let r = &mut acc[*i];
            let (group, kind) = (r.group().to_string(), r.kind().to_string());
            smp::merge_with(&mut r.obj, &patch, &group, &kind, schema);
        }
        many => {
            return Err(patch_error(
                k,
                index,
                format!(
                    "{} objects match this strategic merge patch ({target}); give it a target that picks one",
                    many.len()
                ),
            ))
        }
    }
    Ok(())
}

fn without_identity(mut patch: Value) -> Value {
    if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("name");
        meta.remove("namespace");
    }
    patch
}

/// A patch `target`: exact group, version and kind; anchored regular expressions for name and namespace; label
/// and annotation selectors.
pub(super) struct Matcher<'a> {
    target: &'a Target,
    name: Option<regex::Regex>,
    namespace: Option<regex::Regex>,
    labels: Vec<Requirement>,
    annotations: Vec<Requirement>,
}

impl<'a> Matcher<'a> {
    pub(super) fn new(target: &'a Target) -> std::result::Result<Matcher<'a>, Problem> {
        let anchored = |p: &Option<String>| -> std::result::Result<Option<regex::Regex>, Problem> {
            p.as_ref()
                .map(|p| {
                    regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| Problem::Pattern {
                        pattern: p.clone(),
                        source: Box::new(e),
                    })
                })
                .transpose()
        };
        Ok(Matcher {
            target,
            name: anchored(&target.name)?,
            namespace: anchored(&target.namespace)?,
            labels: selector::parse(target.label_selector.as_deref())?,
            annotations: selector::parse(target.annotation_selector.as_deref())?,
        })
    }

    pub(super) fn matches(&self, r: &Res) -> bool {
        let t = self.target;
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        if !eq(&t.group, r.group()) || !eq(&t.version, r.version()) || !eq(&t.kind, r.kind()) {
            return false;
        }
        if let Some(re) = &self.name {
            if !re.is_match(r.name()) && !r.prev.iter().any(|(_, n)| re.is_match(n)) {
                return false;
            }
        }
        if let Some(re) = &self.namespace {
            if !re.is_match(r.namespace()) {
                return false;
            }
        }
        let meta = |field: &str| {
            r.obj
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_object)
        };
        selector::satisfied(&self.labels, meta("labels"))
            && selector::satisfied(&self.annotations, meta("annotations"))
    }
}
