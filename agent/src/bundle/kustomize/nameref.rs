//! The name reference transformer: after the whole build (every level's prefixes, suffixes, namespaces and
//! content hashes), fields that name another object are rewritten to that object's final name.
//!
//! kustomize runs this once, at the top, not per kustomization, so it must find which object a reference means
//! among everything accumulated. Every object carries its [`Lineage`]: the identities it had before each
//! identity-changing transformer (namespace, prefix, suffix, a JSON patch, a patch allowed to rename, the hash
//! suffix) and the prefixes and suffixes it received. A reference matches an object whose earlier names include
//! it; when several match, the one whose prefixes and suffixes end like the referrer's wins (so an overlay's
//! objects find their own base's copy), and when several still remain with different names the build fails, as
//! kustomize's does.

use serde_json::Value;

use super::config::TransformerConfig;
use super::fieldspec::{self, FieldSpec};
use super::names::cluster_scoped;
use super::problem::Problem;
use super::{KustomizeError, Res, Result};

/// kustomize's namespace key for cluster-scoped objects (never equal to a real namespace).
const CLUSTER: &str = "~X";
const DEFAULT_NAMESPACE: &str = "default";

/// What kustomize remembers about an object's earlier identities (its build annotations `previousNames`,
/// `previousNamespaces`, `previousKinds`, `prefixes`, `suffixes`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Lineage {
    /// Earlier identities, oldest first; the current one is not included.
    pub ids: Vec<PrevId>,
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrevId {
    /// The effective namespace: `default` for none, [`CLUSTER`] for a cluster-scoped object.
    pub namespace: String,
    pub name: String,
    pub kind: String,
}

impl Res {
    /// Records the current identity as an earlier one; kustomize does this before every transformer that may
    /// change it, whether or not it then does.
    pub fn store_previous_id(&mut self) {
        let id = PrevId {
            namespace: effective_namespace(self),
            name: self.name().to_string(),
            kind: self.kind().to_string(),
        };
        self.lineage.ids.push(id);
    }

    /// The kind the object was first given (a patch may have changed it since).
    fn original_kind(&self) -> &str {
        self.lineage
            .ids
            .first()
            .map(|id| id.kind.as_str())
            .unwrap_or_else(|| self.kind())
    }
}

fn effective_namespace(r: &Res) -> String {
    if cluster_scoped(r) {
        CLUSTER.into()
    } else if r.namespace().is_empty() {
        DEFAULT_NAMESPACE.into()
    } else {
        r.namespace().into()
    }
}

/// A group, version and kind, each optional (empty matches anything).
#[derive(Clone, Copy)]
struct Gvk<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

impl Gvk<'_> {
    fn selects(&self, group: &str, version: &str, kind: &str) -> bool {
        (self.group.is_empty() || self.group == group)
            && (self.version.is_empty() || self.version == version)
            && (self.kind.is_empty() || self.kind == kind)
    }
}

/// What the transformer needs of every object: its identity now and its lineage. Names do not change while
/// references are fixed, so this is read once.
struct Known {
    kind: String,
    group: String,
    version: String,
    name: String,
    namespace: String,
    effective_namespace: String,
    cluster: bool,
    lineage: Lineage,
}

impl Known {
    fn of(r: &Res) -> Known {
        Known {
            kind: r.kind().into(),
            group: r.group().into(),
            version: r.version().into(),
            name: r.name().into(),
            namespace: r.namespace().into(),
            effective_namespace: effective_namespace(r),
            cluster: cluster_scoped(r),
            lineage: r.lineage.clone(),
        }
    }

    /// True when any earlier identity was of the given group, version and kind.
    fn was_of(&self, gvk: Gvk) -> bool {
        self.lineage
            .ids
            .iter()
            .any(|id| gvk.selects(&self.group, &self.version, &id.kind))
    }

    /// The namespace the object was first given, as kustomize compares namespaces.
    fn original_namespace(&self) -> &str {
        self.lineage
            .ids
            .first()
            .map(|id| id.namespace.as_str())
            .unwrap_or(&self.effective_namespace)
    }

    fn describe(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// kustomize's comparison of name prefixes (or suffixes): the shorter list is the end of the longer one; an
/// empty list only matches an empty list.
fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return long.is_empty();
    }
    long.ends_with(short)
}

fn affixes_match(a: &Lineage, b: &Lineage, allow_empty: bool) -> bool {
    let fits = |x: &[String], y: &[String]| {
        (allow_empty && (x.is_empty() || y.is_empty())) || same_ending(x, y)
    };
    fits(&a.prefixes, &b.prefixes) && fits(&a.suffixes, &b.suffixes)
}

/// The objects the referrer may refer to at all: any object when it is cluster-scoped; otherwise cluster-scoped
/// objects, those in its namespace, and for a RoleBinding those in the namespaces its ServiceAccount subjects
/// name.
fn reachable(known: &[Known], referrer: &Res) -> Vec<usize> {
    if cluster_scoped(referrer) {
        return (0..known.len()).collect();
    }
    let ns = effective_namespace(referrer);
    let mut subject_namespaces = Vec::new();
    if referrer.kind() == "RoleBinding" {
        for s in referrer
            .obj
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount") {
                if let Some(n) = s.get("namespace").and_then(Value::as_str) {
                    subject_namespaces.push(n.to_string());
                }
            }
        }
    }
    (0..known.len())
        .filter(|&i| {
            let c = &known[i];
            c.cluster || c.effective_namespace == ns || subject_namespaces.contains(&c.namespace)
        })
        .collect()
}

/// One referring field being fixed: which kind it refers to, from which object.
struct Lookup<'a> {
    known: &'a [Known],
    referrer: &'a Known,
    target: Gvk<'a>,
    /// For a `roleRef/name` field: the group and kind the roleRef itself names.
    role_ref: Option<(String, String)>,
}

impl Lookup<'_> {
    /// kustomize's choice among `candidates` for a reference to `old`: objects that once had that name and that
    /// kind, within reach of the referrer; several are narrowed by prefixes and suffixes; several left that
    /// differ (`identical` says when they do not) make the reference ambiguous.
    fn select(
        &self,
        old: &str,
        candidates: &[usize],
        identical: fn(&Known, &Known) -> bool,
    ) -> std::result::Result<Option<usize>, Problem> {
        let referrer = self.referrer;
        let mut hits: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let c = &self.known[i];
                c.lineage.ids.iter().any(|id| id.name == old)
                    && c.was_of(self.target)
                    && self.role_ref.as_ref().is_none_or(|(group, kind)| {
                        c.was_of(Gvk {
                            group,
                            version: "",
                            kind,
                        })
                    })
                    && (referrer.cluster
                        || c.cluster
                        || c.kind == "ServiceAccount"
                        || c.effective_namespace == referrer.effective_namespace)
            })
            .collect();
        if hits.len() > 1 {
            hits.retain(|&i| affixes_match(&self.known[i].lineage, &referrer.lineage, true));
            if hits.len() > 1 {
                hits.retain(|&i| affixes_match(&self.known[i].lineage, &referrer.lineage, false));
            }
        }
        match hits.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            [first, rest @ ..] => {
                let a = &self.known[*first];
                if rest.iter().all(|&i| identical(a, &self.known[i])) {
                    return Ok(Some(*first));
                }
                let names: Vec<String> = hits.iter().map(|&i| self.known[i].describe()).collect();
                Err(Problem::Ambiguous {
                    old: old.to_string(),
                    candidates: names.join(", "),
                })
            }
        }
    }

    /// The new value for one referring value: a name, or a map with `name` (and maybe `namespace`) such as an
    /// RBAC subject or a webhook's service. Nothing when it refers to no renamed object.
    fn fix(&self, reachable: &[usize], v: &mut Value) -> std::result::Result<(), Problem> {
        match v {
            Value::String(old) => {
                if let Some(i) = self.select(old, reachable, |a, b| a.name == b.name)? {
                    if self.known[i].name != *old {
                        *old = self.known[i].name.clone();
                    }
                }
            }
            Value::Object(map) => {
                let Some(old) = map.get("name") else {
                    return Err(Problem::NoName);
                };
                let Some(old) = old.as_str() else {
                    return Ok(());
                };
                let candidates = match map.get("namespace") {
                    None | Some(Value::Null) => reachable.to_vec(),
                    Some(ns) => {
                        let ns = ns
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| ns.to_string());
                        by_namespace(self.known, reachable, &ns)
                    }
                };
                let same = |a: &Known, b: &Known| a.name == b.name && a.namespace == b.namespace;
                let Some(i) = self.select(old, &candidates, same)? else {
                    return Ok(());
                };
                let c = &self.known[i];
                if c.name == old && c.namespace.is_empty() {
                    return Ok(());
                }
                map.insert("name".into(), Value::String(c.name.clone()));
                if !c.namespace.is_empty() {
                    map.insert("namespace".into(), Value::String(c.namespace.clone()));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Candidates for a reference that names its namespace: those first given that namespace if there are any,
/// else those in it now.
fn by_namespace(known: &[Known], reachable: &[usize], ns: &str) -> Vec<usize> {
    let original: Vec<usize> = reachable
        .iter()
        .copied()
        .filter(|&i| {
            let o = known[i].original_namespace();
            o != CLUSTER && o == ns
        })
        .collect();
    if !original.is_empty() {
        return original;
    }
    reachable
        .iter()
        .copied()
        .filter(|&i| known[i].effective_namespace != CLUSTER && known[i].effective_namespace == ns)
        .collect()
}

/// Rewrites every field the name reference configuration lists to the final name of the object it refers to.
pub fn fix_references(acc: &mut [Res], config: &TransformerConfig) -> Result<()> {
    let known: Vec<Known> = acc.iter().map(Known::of).collect();
    for (at, r) in acc.iter_mut().enumerate() {
        let reachable = reachable(&known, r);
        let kind = r.original_kind().to_string();
        for entry in &config.name_reference {
            let target = Gvk {
                group: entry.group(),
                version: entry.version.as_deref().unwrap_or(""),
                kind: &entry.kind,
            };
            for spec in &entry.field_specs {
                if !selects(spec, &known[at].group, &known[at].version, &kind) {
                    continue;
                }
                let role_ref = if spec.path.ends_with("roleRef/name") {
                    match (
                        r.obj.pointer("/roleRef/apiGroup").and_then(Value::as_str),
                        r.obj.pointer("/roleRef/kind").and_then(Value::as_str),
                    ) {
                        (Some(g), Some(k)) => Some((g.to_string(), k.to_string())),
                        _ => None,
                    }
                } else {
                    None
                };
                let lookup = Lookup {
                    known: &known,
                    referrer: &known[at],
                    target,
                    role_ref,
                };
                let steps = spec.steps();
                let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
                let mut problem = None;
                fieldspec::walk(&mut r.obj, &steps, false, &mut |v| {
                    if problem.is_none() {
                        problem = lookup.fix(&reachable, v).err();
                    }
                });
                if let Some(message) = problem {
                    return Err(KustomizeError::Invalid {
                        file: r.origin.clone(),
                        message: format!("{} field {}: {message}", known[at].describe(), spec.path),
                    });
                }
            }
        }
    }
    Ok(())
}

/// kustomize picks referrers by their original kind; a spec's group may carry its version.
fn selects(spec: &FieldSpec, group: &str, version: &str, kind: &str) -> bool {
    let spec_group = spec
        .group
        .as_deref()
        .map(|g| g.split('/').next().unwrap_or(g))
        .unwrap_or("");
    Gvk {
        group: spec_group,
        version: spec.version.as_deref().unwrap_or(""),
        kind: spec.kind.as_deref().unwrap_or(""),
    }
    .selects(group, version, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn affix_lists_match_when_one_ends_the_other() {
        assert!(same_ending(&s(&["a", "b", "c"]), &s(&["b", "c"])));
        assert!(!same_ending(&s(&["a", "b", "c"]), &s(&["a", "b"])));
        assert!(same_ending(&s(&[]), &s(&[])));
        assert!(!same_ending(&s(&[]), &s(&["a"])));
    }
}
