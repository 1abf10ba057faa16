//! Variable substitution over built objects, like Flux's `postBuild.substitute`: `${var}`, `${var:=default}`, and
//! `$${var}` for a literal `${var}`.
//!
//! Runs after the build, on string values only (never on keys), so a value can never turn into YAML structure. A
//! value that is exactly one `${...}` and becomes a number or a boolean takes that type, so `replicas: ${n}` works
//! as it does with Flux; but not in fields the API defines as strings (labels, annotations, ConfigMap and Secret
//! data, an env entry's value), where Flux's text substitution would hand the API server a number it refuses. An undefined variable with no default fails the revision; objects annotated
//! `outpost.dev/substitute: disabled` are left as written. `${` not followed by a variable name and `}` (such as
//! shell's `${1}` or `${x:-y}`) is left alone.

use std::collections::BTreeMap;

use serde_json::Value;

pub const DISABLE_ANNOTATION: &str = "outpost.dev/substitute";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubstituteError {
    #[error("{object}: variable {var:?} is not defined and has no default; set it in [agent] vars or the source's vars, write ${{{var}:=default}}, escape it as $${{{var}}}, or annotate the object outpost.dev/substitute: disabled")]
    Undefined { object: String, var: String },
}

/// A `${name}` with no value and no default: the variable's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("variable {0:?} is not defined and has no default")]
pub struct Undefined(pub String);

/// Substitutes every string value of every object that does not opt out.
pub fn apply(
    objects: &mut [Value],
    vars: &BTreeMap<String, String>,
) -> Result<(), SubstituteError> {
    for object in objects.iter_mut() {
        let disabled = object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(DISABLE_ANNOTATION))
            .and_then(Value::as_str)
            == Some("disabled");
        if disabled {
            continue;
        }
        let id = super::identity(object).unwrap_or_else(|_| "an object".into());
        let undefined = |Undefined(var)| SubstituteError::Undefined {
            object: id.clone(),
            var,
        };
        // ConfigMap and Secret data are maps of strings; the rest of the object follows the general rule.
        let string_data = matches!(
            object.get("kind").and_then(Value::as_str),
            Some("ConfigMap" | "Secret")
        );
        match object.as_object_mut() {
            Some(map) if string_data => {
                for (key, child) in map.iter_mut() {
                    let strings = if matches!(key.as_str(), "data" | "stringData") {
                        Strings::Always
                    } else {
                        Strings::Typed
                    };
                    walk(child, vars, strings).map_err(undefined)?;
                }
            }
            _ => walk(object, vars, Strings::Typed).map_err(undefined)?,
        }
    }
    Ok(())
}

/// Where a whole-value substitution keeps its string type: fields the API defines as strings whatever they
/// hold. Without this a label `site: "${site}"` with site = 42 would become a number and be rejected.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strings {
    /// Anywhere else: an integer or boolean result takes that type (`replicas: ${n}`).
    Typed,
    /// Labels, annotations, ConfigMap / Secret data, and an `env` entry's `value`.
    Always,
}

fn walk(v: &mut Value, vars: &BTreeMap<String, String>, strings: Strings) -> Result<(), Undefined> {
    match v {
        Value::String(s) => {
            if let Some(new) = substitute_as(s, vars, strings)? {
                *v = new;
            }
        }
        Value::Array(items) => {
            for i in items {
                walk(i, vars, strings)?;
            }
        }
        Value::Object(map) => {
            let is_env_entry = map.contains_key("name") && map.contains_key("value");
            for (key, child) in map.iter_mut() {
                let always = matches!(key.as_str(), "labels" | "annotations" | "matchLabels")
                    || (is_env_entry && key == "value");
                walk(child, vars, if always { Strings::Always } else { strings })?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The new value of `s`, or `None` when it holds nothing to substitute. `Err` names an undefined variable.
pub fn substitute(s: &str, vars: &BTreeMap<String, String>) -> Result<Option<Value>, Undefined> {
    substitute_as(s, vars, Strings::Typed)
}

fn substitute_as(
    s: &str,
    vars: &BTreeMap<String, String>,
    strings: Strings,
) -> Result<Option<Value>, Undefined> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut whole = false;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        match reference(tail) {
            Some((len, name, default)) => {
                let value = match (vars.get(name), default) {
                    (Some(v), _) => v.as_str(),
                    (None, Some(d)) => d,
                    (None, None) => return Err(Undefined(name.to_string())),
                };
                whole = at == 0 && len == s.len();
                out.push_str(value);
                rest = &tail[len..];
            }
            None => {
                out.push('$');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    if whole && strings == Strings::Typed {
        if let Some(typed) = typed(&out) {
            return Ok(Some(typed));
        }
    }
    Ok(Some(Value::String(out)))
}

/// `${name}` or `${name:=default}` at the start of `s`: (length, name, default).
fn reference(s: &str) -> Option<(usize, &str, Option<&str>)> {
    let body = s.strip_prefix("${")?;
    let end = body.find('}')?;
    let inner = &body[..end];
    let (name, default) = match inner.split_once(":=") {
        Some((n, d)) => (n, Some(d)),
        None => (inner, None),
    };
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    Some((end + 3, name, default))
}

/// A whole-value substitution that reads as an integer, a float or a boolean takes that type.
fn typed(text: &str) -> Option<Value> {
    match text {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    // Only the canonical spelling: "042" stays a string.
    if let Ok(i) = text.parse::<i64>() {
        return (i.to_string() == text).then(|| Value::from(i));
    }
    if text.contains('.') {
        if let Ok(f) = text.parse::<f64>() {
            return serde_json::Number::from_f64(f).map(Value::Number);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> BTreeMap<String, String> {
        [("site", "042"), ("region", "eu-west"), ("n", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn forms() {
        let v = vars();
        let s = |t: &str| substitute(t, &v);
        assert_eq!(s("store-${site}").unwrap(), Some(json!("store-042")));
        assert_eq!(
            s("${missing:=fallback}-x").unwrap(),
            Some(json!("fallback-x"))
        );
        assert_eq!(s("${region:=ignored}").unwrap(), Some(json!("eu-west")));
        assert_eq!(
            s("$${site} and ${site}").unwrap(),
            Some(json!("${site} and 042"))
        );
        assert_eq!(s("${n}").unwrap(), Some(json!(3)));
        assert_eq!(s("${site}").unwrap(), Some(json!("042")));
        assert_eq!(
            s("echo ${1} ${x:-y}").unwrap(),
            Some(json!("echo ${1} ${x:-y}"))
        );
        assert_eq!(s("plain").unwrap(), None);
        assert_eq!(s("${nope}").unwrap_err(), Undefined("nope".into()));
    }

    #[test]
    fn string_fields_stay_strings_and_the_rest_takes_the_type() {
        let mut objects = vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "labels": {"site": "${n}"}, "annotations": {"on": "${yes}", "v": "${ver}"}},
                "spec": {"replicas": "${n}", "selector": {"matchLabels": {"site": "${n}"}},
                    "template": {"spec": {"containers": [{"name": "c", "env": [{"name": "PORT", "value": "${n}"}]}]}}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"n": "${n}"}}),
        ];
        let mut v = vars();
        v.insert("yes".into(), "true".into());
        v.insert("ver".into(), "1.50".into());
        apply(&mut objects, &v).unwrap();
        let d = &objects[0];
        assert_eq!(d["spec"]["replicas"], json!(3));
        assert_eq!(d["metadata"]["labels"]["site"], json!("3"));
        assert_eq!(d["metadata"]["annotations"]["on"], json!("true"));
        assert_eq!(
            d["metadata"]["annotations"]["v"],
            json!("1.50"),
            "the text as written"
        );
        assert_eq!(d["spec"]["selector"]["matchLabels"]["site"], json!("3"));
        let env = &d["spec"]["template"]["spec"]["containers"][0]["env"][0];
        assert_eq!(env["value"], json!("3"));
        assert_eq!(objects[1]["data"]["n"], json!("3"));
    }

    #[test]
    fn undefined_names_object_and_variable_and_disabled_objects_are_left_alone() {
        let mut objects = vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "x"},
                "data": {"k": "${nope}"}}),
        ];
        let err = apply(&mut objects, &vars()).unwrap_err().to_string();
        assert!(
            err.contains("ConfigMap x/a") && err.contains("\"nope\""),
            "{err}"
        );
        objects[0]["metadata"]["annotations"] = json!({DISABLE_ANNOTATION: "disabled"});
        apply(&mut objects, &vars()).unwrap();
        assert_eq!(objects[0]["data"]["k"], "${nope}");
    }
}
