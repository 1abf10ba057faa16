//! `vars` (deprecated in kustomize, still common): `$(NAME)` in the fields the varReference field specs list is
//! replaced with a field of another object. Vars of every kustomization in the build are collected and
//! resolved once, over the finished objects; a name declared twice, or an objref that matches no object or
//! several, fails the build. `$(NAME)` of an undeclared var is left as written.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::config::TransformerConfig;
use super::fieldspec;
use super::{KustomizeError, Res, Result};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Var {
    pub name: String,
    pub objref: ObjRef,
    pub fieldref: FieldRef,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjRef {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub api_version: Option<String>,
    pub group: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FieldRef {
    pub fieldpath: Option<String>,
}

/// Vars declared so far, with the kustomization file that declared each and (once that kustomization is
/// built) the object its objref names there: a var of a base refers to the base's object, even where an
/// overlay holds another of the same original name.
#[derive(Debug, Default)]
pub struct Declared(Vec<(Var, String, Option<u64>)>);

impl Declared {
    pub fn add(&mut self, file: &str, raw: &[Value]) -> Result<()> {
        for v in raw {
            let var: Var =
                serde_json::from_value(v.clone()).map_err(|e| KustomizeError::Invalid {
                    file: file.into(),
                    message: format!("vars: {e}"),
                })?;
            if let Some((_, first, _)) = self.0.iter().find(|(d, _, _)| d.name == var.name) {
                let message = if first == file {
                    format!(
                        "var {:?} is declared twice because this kustomization is built twice in one build (two overlays include it); include it once, or move the var up to the kustomization that combines them",
                        var.name
                    )
                } else {
                    format!(
                        "var {:?} is already declared (in {first}); give one of them another name",
                        var.name
                    )
                };
                return Err(KustomizeError::Invalid {
                    file: file.into(),
                    message,
                });
            }
            self.0.push((var, file.to_string(), None));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ties the vars `file` declared to the objects their objrefs name among `acc` (that kustomization's).
    pub fn bind(&mut self, file: &str, acc: &[Res]) -> Result<()> {
        for (var, declared_in, bound) in self.0.iter_mut() {
            if declared_in == file && bound.is_none() {
                *bound = Some(find(var, file, acc)?.uid);
            }
        }
        Ok(())
    }

    /// Replaces `$(NAME)` in every var reference field.
    pub fn resolve(&self, acc: &mut [Res], config: &TransformerConfig) -> Result<()> {
        let mut values = BTreeMap::new();
        for (var, file, bound) in &self.0 {
            let r = match bound.and_then(|uid| acc.iter().find(|r| r.uid == uid)) {
                Some(r) => r,
                None => find(var, file, acc)?,
            };
            let path = var.fieldref.fieldpath.as_deref().unwrap_or("metadata.name");
            let value = lookup(&r.obj, path).ok_or_else(|| KustomizeError::Invalid {
                file: file.clone(),
                message: format!(
                    "var {:?}: {} {} has no field {path}",
                    var.name,
                    r.kind(),
                    r.name()
                ),
            })?;
            values.insert(var.name.clone(), value);
        }
        for r in acc.iter_mut() {
            let specs: Vec<_> = config
                .var_reference
                .iter()
                .filter(|s| s.selects(r))
                .map(|s| fieldspec::FieldSpec {
                    create: false,
                    ..s.clone()
                })
                .collect();
            for spec in specs {
                fieldspec::visit(&mut r.obj, &spec, &mut |v| substitute(v, &values));
            }
        }
        Ok(())
    }
}

fn find<'a>(var: &Var, file: &str, acc: &'a [Res]) -> Result<&'a Res> {
    let o = &var.objref;
    let (group, version) = match &o.api_version {
        Some(av) => match av.rsplit_once('/') {
            Some((g, v)) => (Some(g.to_string()), Some(v.to_string())),
            None => (Some(String::new()), Some(av.clone())),
        },
        None => (o.group.clone(), o.version.clone()),
    };
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    let found: Vec<&Res> = acc
        .iter()
        .filter(|r| {
            eq(&o.kind, r.kind())
                && eq(&group, r.group())
                && eq(&version, r.version())
                && o.name.as_deref().is_none_or(|n| r.answers_to(n))
                && o.namespace
                    .as_deref()
                    .is_none_or(|n| r.namespace() == n || r.prev.iter().any(|(ns, _)| ns == n))
        })
        .collect();
    let invalid = |message: String| KustomizeError::Invalid {
        file: file.into(),
        message,
    };
    let target = format!(
        "{} {}",
        o.kind.as_deref().unwrap_or("?"),
        o.name.as_deref().unwrap_or("?")
    );
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(invalid(format!(
            "var {:?}: no object matches its objref ({target})",
            var.name
        ))),
        _ => Err(invalid(format!(
            "var {:?}: {} objects match its objref ({target}); add a namespace to tell them apart",
            var.name,
            found.len()
        ))),
    }
}

/// `a.b[0].c` (or `a.b.0.c`) in an object.
fn lookup(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = obj;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = match cur {
                Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                other => other.get(key)?,
            };
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            let i: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.get(i)?;
        }
    }
    Some(cur.clone())
}

fn substitute(v: &mut Value, values: &BTreeMap<String, Value>) {
    match v {
        Value::String(s) => {
            if let Some(new) = expand(s, values) {
                *v = new;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| substitute(i, values)),
        Value::Object(map) => map.values_mut().for_each(|i| substitute(i, values)),
        _ => {}
    }
}

/// The string with `$(NAME)` expanded (`$$` is a literal `$`); a string that is one reference to a non-string
/// value takes that value.
fn expand(s: &str, values: &BTreeMap<String, Value>) -> Option<Value> {
    if !s.contains("$(") {
        return None;
    }
    if let Some(name) = s.strip_prefix("$(").and_then(|r| r.strip_suffix(')')) {
        if let Some(v) = values.get(name).filter(|v| !v.is_string()) {
            return Some(v.clone());
        }
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        if let Some(body) = after.strip_prefix('(') {
            if let Some(end) = body.find(')') {
                let name = &body[..end];
                if let Some(v) = values.get(name) {
                    match v {
                        Value::String(t) => out.push_str(t),
                        other => out.push_str(&other.to_string()),
                    }
                    rest = &body[end + 1..];
                    continue;
                }
            }
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    Some(Value::String(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_expand_and_unknown_ones_stay() {
        let values = BTreeMap::from([("A".to_string(), json!("x")), ("N".to_string(), json!(3))]);
        assert_eq!(expand("$(A)-$(B)", &values), Some(json!("x-$(B)")));
        assert_eq!(expand("$(N)", &values), Some(json!(3)));
        assert_eq!(expand("$$(A)", &values), Some(json!("$(A)")));
        assert_eq!(
            lookup(
                &json!({"spec": {"ports": [{"protocol": "TCP"}]}}),
                "spec.ports[0].protocol"
            ),
            Some(json!("TCP"))
        );
    }
}
