//! Kubernetes label selectors, as a patch `target` writes them (`labelSelector`, `annotationSelector`).

use serde_json::Value;

use super::problem::Problem;

pub(super) enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>, bool),
}

pub(super) fn satisfied(
    reqs: &[Requirement],
    map: Option<&serde_json::Map<String, Value>>,
) -> bool {
    let get = |k: &str| map.and_then(|m| m.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
        Requirement::In(k, vs, inside) => {
            let hit = get(k).is_some_and(|v| vs.iter().any(|x| x == v));
            hit == *inside
        }
    })
}

/// Kubernetes label selector syntax: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`.
pub(super) fn parse(text: Option<&str>) -> std::result::Result<Vec<Requirement>, Problem> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    let mut out = Vec::new();
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let set = |op: &str| -> Option<(String, Vec<String>)> {
            let (k, rest) = part.split_once(op)?;
            let list = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            Some((
                k.trim().into(),
                list.split(',').map(|v| v.trim().to_string()).collect(),
            ))
        };
        let req = if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if let Some((k, vs)) = set(" notin ") {
            Requirement::In(k, vs, false)
        } else if let Some((k, vs)) = set(" in ") {
            Requirement::In(k, vs, true)
        } else if let Some(k) = part.strip_prefix('!') {
            Requirement::NotExists(k.trim().into())
        } else if part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            Requirement::Exists(part.into())
        } else {
            return Err(Problem::Selector {
                text: text.to_string(),
                part: part.to_string(),
            });
        };
        out.push(req);
    }
    Ok(out)
}
