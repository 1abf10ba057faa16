//! JSON Patch (RFC 6902) over one object, through the `json-patch` crate (the one kube-rs uses). Operations go
//! to it one at a time, so that a failing one is named by its place in the patch and so that `copy` is bounded
//! before it runs: the crate has no bound, and a copy into its own source doubles an object.

use json_patch::{PatchErrorKind, PatchOperation};
use serde_json::Value;

/// How many values (every object, list, string, number... counted) the `copy` operations of one patch may add
/// to one object. A copy into its own source doubles it, so forty lines of patch would otherwise ask for 2^40
/// values and take the agent down; real patches copy a label or a container's env, far below this.
pub const MAX_COPIED_VALUES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum JsonPatchError {
    #[error("operation {index}: not a JSON patch operation ({source}); write op (add, remove, replace, move, copy, test), path, and value or from")]
    Malformed {
        index: usize,
        source: serde_json::Error,
    },
    #[error("operation {index}: {operation}: {kind}")]
    Failed {
        index: usize,
        operation: String,
        kind: PatchErrorKind,
    },
    #[error("operation {index}: copy from {from} to {path}: the copies of this patch add up to more than {MAX_COPIED_VALUES} values; copy smaller parts, or write the value out in the patch")]
    TooMuchCopied {
        index: usize,
        from: String,
        path: String,
    },
}

/// Applies the operations in order; the first failing one explains itself (its number, the operation, why).
pub fn apply(target: &mut Value, ops: &[Value]) -> Result<(), JsonPatchError> {
    let mut copied = 0;
    for (i, op) in ops.iter().enumerate() {
        let index = i + 1;
        let op: PatchOperation = serde_json::from_value(op.clone())
            .map_err(|source| JsonPatchError::Malformed { index, source })?;
        if let PatchOperation::Copy(copy) = &op {
            if let Some(source) = target.pointer(copy.from.as_str()) {
                copied += count_values(source, MAX_COPIED_VALUES + 1 - copied);
                if copied > MAX_COPIED_VALUES {
                    return Err(JsonPatchError::TooMuchCopied {
                        index,
                        from: copy.from.to_string(),
                        path: copy.path.to_string(),
                    });
                }
            }
        }
        // The whole build fails on an error, so the crate's undo log (`patch`) would be wasted work.
        json_patch::patch_unsafe(target, std::slice::from_ref(&op)).map_err(|e| {
            JsonPatchError::Failed {
                index,
                operation: op.to_string(),
                kind: e.kind,
            }
        })?;
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
