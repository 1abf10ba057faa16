//! Field specs: kustomize's way of saying which field of which kinds a transformer touches (`kind`, optional
//! `group`/`version`, a `/`-separated `path`, and whether missing maps on the way are `create`d).
//!
//! A path step that meets a list applies to every element (`containers/image` and `containers[]/image` mean the
//! same), and `\/` is a slash inside a key (annotation names).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::Res;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldSpec {
    pub group: Option<String>,
    pub version: Option<String>,
    pub kind: Option<String>,
    pub path: String,
    pub create: bool,
}

impl FieldSpec {
    pub fn new(kind: Option<&str>, path: &str, create: bool) -> FieldSpec {
        FieldSpec {
            kind: kind.map(String::from),
            path: path.into(),
            create,
            ..FieldSpec::default()
        }
    }

    /// True when the spec is about this object's kind (an empty kind means every kind).
    pub fn selects(&self, r: &Res) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w.is_empty() || w == have)
        };
        // `group` is sometimes written with its version (`networking.k8s.io/v1`); compare the group part.
        let group = self
            .group
            .as_deref()
            .map(|g| g.split('/').next().unwrap_or(g).to_string());
        eq(&self.kind, r.kind()) && eq(&group, r.group()) && eq(&self.version, r.version())
    }

    /// True when every group, version and kind `other` names is this spec's too (an empty one names any).
    pub fn within(&self, other: &FieldSpec) -> bool {
        let group = |g: &Option<String>| {
            g.as_deref()
                .map(|g| g.split('/').next().unwrap_or(g).to_string())
                .unwrap_or_default()
        };
        let fits = |mine: String, theirs: String| theirs.is_empty() || mine == theirs;
        fits(group(&self.group), group(&other.group))
            && fits(
                self.version.clone().unwrap_or_default(),
                other.version.clone().unwrap_or_default(),
            )
            && fits(
                self.kind.clone().unwrap_or_default(),
                other.kind.clone().unwrap_or_default(),
            )
    }

    /// The path's steps, `\/` kept as a slash; a step ending in `[]` names a list (never created).
    pub fn steps(&self) -> Vec<String> {
        split_path(&self.path)
    }
}

pub fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'/') => {
                cur.push('/');
                chars.next();
            }
            '/' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

/// Calls `f` on every value the spec reaches in `obj`. With `create`, missing maps on the way are made and a
/// missing last field is handed to `f` as `Null` (to fill in); without, a missing step ends that branch.
pub fn visit(obj: &mut Value, spec: &FieldSpec, f: &mut dyn FnMut(&mut Value)) {
    let steps = spec.steps();
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    walk(obj, &steps, spec.create, f);
}

pub fn walk(v: &mut Value, steps: &[&str], create: bool, f: &mut dyn FnMut(&mut Value)) {
    if let Value::Array(items) = v {
        for item in items {
            walk(item, steps, create, f);
        }
        return;
    }
    let Some((first, rest)) = steps.split_first() else {
        f(v);
        return;
    };
    if v.is_null() && create {
        *v = Value::Object(Map::new());
    }
    let Some(map) = v.as_object_mut() else { return };
    // A list is never made up: `volumeClaimTemplates[]/metadata/labels` only reaches existing templates.
    let (first, make) = match first.strip_suffix("[]") {
        Some(list) => (list, false),
        None => (*first, create),
    };
    if !map.contains_key(first) {
        if !make {
            return;
        }
        map.insert(first.to_string(), Value::Null);
    }
    if let Some(next) = map.get_mut(first) {
        if next.is_null() && !rest.is_empty() && !create {
            return;
        }
        walk(next, rest, create, f);
    }
}

/// Applies `f` at every spec that selects the object.
pub fn apply_all(r: &mut Res, specs: &[FieldSpec], f: &mut dyn FnMut(&mut Value)) {
    for spec in specs {
        if spec.selects(r) {
            visit(&mut r.obj, spec, f);
        }
    }
}
