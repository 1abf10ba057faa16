//! JSON Patch (RFC 6902) over one object: add, remove, replace, move, copy, test.

use serde_json::Value;

/// How many values (every object, list, string, number... counted) the `copy` operations of one patch may add
/// to one object. A copy into its own source doubles it, so forty lines of patch would otherwise ask for 2^40
/// values and take the agent down; real patches copy a label or a container's env, far below this.
pub const MAX_COPIED_VALUES: usize = 10_000;

/// Applies the operations in order; the first failing one explains itself (index, op, path).
pub fn apply(target: &mut Value, ops: &[Value]) -> Result<(), String> {
    let mut copied = 0;
    for (i, op) in ops.iter().enumerate() {
        let at = |m: String| format!("operation {}: {m}", i + 1);
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| at("has no `op`".into()))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| at(format!("{name} has no `path`")))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| at(format!("{name} {path} has no `value`")))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| at(format!("{name} {path} has no `from`")))
        };
        let result = match name {
            "add" => add(target, path, value()?),
            "remove" => remove(target, path).map(|_| ()),
            "replace" => {
                let v = value()?;
                match target.pointer_mut(&check_path(path)?) {
                    Some(slot) => {
                        *slot = v;
                        Ok(())
                    }
                    None => Err(format!("path {path} does not exist")),
                }
            }
            "move" => {
                let from = from()?;
                let v = remove(target, from)?;
                add(target, path, v)
            }
            "copy" => {
                let from = from()?;
                let source = target
                    .pointer(&check_path(from)?)
                    .ok_or_else(|| format!("from {from} does not exist"))?;
                copied += count_values(source, MAX_COPIED_VALUES + 1 - copied);
                if copied > MAX_COPIED_VALUES {
                    return Err(at(format!(
                        "copy from {from} to {path}: the copies of this patch add up to more than \
                         {MAX_COPIED_VALUES} values; copy smaller parts, or write the value out in the patch"
                    )));
                }
                let v = source.clone();
                add(target, path, v)
            }
            "test" => {
                let v = value()?;
                if target.pointer(&check_path(path)?) == Some(&v) {
                    Ok(())
                } else {
                    Err(format!("test of {path} failed"))
                }
            }
            other => Err(format!(
                "unknown op {other:?} (add, remove, replace, move, copy, test)"
            )),
        };
        result.map_err(at)?;
    }
    Ok(())
}

/// The number of values in `v` (itself included), counting no further than `limit`.
fn count_values(v: &Value, limit: usize) -> usize {
    let mut count = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        count += 1;
        if count >= limit {
            return count;
        }
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    count
}

fn check_path(path: &str) -> Result<String, String> {
    if !path.is_empty() && !path.starts_with('/') {
        return Err(format!("path {path:?} must start with `/`"));
    }
    Ok(path.to_string())
}

fn split(path: &str) -> Result<(String, String), String> {
    check_path(path)?;
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("path {path:?} has no parent"))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| format!("index {last:?} in {path} is out of range"))?
            };
            items.insert(index, value);
            Ok(())
        }
        Some(_) => Err(format!("parent of {path} is not an object or a list")),
        None => Err(format!("parent of {path} does not exist")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(map)) => map
            .remove(&last)
            .ok_or_else(|| format!("path {path} does not exist")),
        Some(Value::Array(items)) => {
            let index = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < items.len())
                .ok_or_else(|| format!("index {last:?} in {path} is out of range"))?;
            Ok(items.remove(index))
        }
        _ => Err(format!("path {path} does not exist")),
    }
}
