//! `Status` answers (the API server's error body) and the small value helpers the other
//! modules share (timestamps, uids).
//!
//! The wording follows the recorded transcripts, because clients and tests match on
//! `reason`, `code` and `details`, and humans read `message`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// An answer that is not a success: HTTP status plus `Status` body. (Unknown routes are
/// answered as plain text by the router, not through this type.)
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Status(u16, Value),
}

pub(crate) type Res<T> = Result<T, Failure>;

/// Identifies a resource type in messages: `configmaps`, `leases.coordination.k8s.io`.
pub(crate) fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn details(name: Option<&str>, group: &str, kind: &str) -> Value {
    let mut d = serde_json::Map::new();
    if let Some(n) = name {
        d.insert("name".into(), json!(n));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(kind));
    Value::Object(d)
}

pub(crate) fn status(
    code: u16,
    reason: Option<&str>,
    message: &str,
    details: Option<Value>,
) -> Value {
    let mut s = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message,
    });
    if let Some(r) = reason {
        s["reason"] = json!(r);
    }
    if let Some(d) = details {
        s["details"] = d;
    }
    s["code"] = json!(code);
    s
}

pub(crate) fn not_found(resource: &str, group: &str, name: &str) -> Failure {
    let msg = format!("{} \"{name}\" not found", qualified(resource, group));
    Failure::Status(
        404,
        status(
            404,
            Some("NotFound"),
            &msg,
            Some(details(Some(name), group, resource)),
        ),
    )
}

pub(crate) fn already_exists(resource: &str, group: &str, name: &str) -> Failure {
    let msg = format!("{} \"{name}\" already exists", qualified(resource, group));
    Failure::Status(
        409,
        status(
            409,
            Some("AlreadyExists"),
            &msg,
            Some(details(Some(name), group, resource)),
        ),
    )
}

pub(crate) fn conflict_stale(resource: &str, group: &str, name: &str) -> Failure {
    let msg = format!(
        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
        qualified(resource, group)
    );
    Failure::Status(
        409,
        status(
            409,
            Some("Conflict"),
            &msg,
            Some(details(Some(name), group, resource)),
        ),
    )
}

pub(crate) fn bad_request(message: &str) -> Failure {
    Failure::Status(400, status(400, Some("BadRequest"), message, None))
}

pub(crate) fn internal(message: &str) -> Failure {
    Failure::Status(500, status(500, None, message, None))
}

/// One `details.causes[]` entry of an Invalid answer.
pub(crate) struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub(crate) fn invalid(field: &str, value: &str, why: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value}: {why}"),
            field: field.to_string(),
        }
    }
    pub(crate) fn required(field: &str) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: field.to_string(),
        }
    }
}

/// 422 Invalid; `kind_name` is the Kind for built-ins (`ConfigMap`, `Deployment.apps` in the
/// message), the plural for a few types (leases) as the real server does.
pub(crate) fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Failure {
    let subject = qualified(kind, group);
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let joined = if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    };
    let msg = format!("{subject} \"{name}\" is invalid: {joined}");
    let mut d = details(Some(name), group, kind);
    d["causes"] = causes
        .iter()
        .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
        .collect();
    Failure::Status(422, status(422, Some("Invalid"), &msg, Some(d)))
}

pub(crate) fn unauthorized() -> Failure {
    Failure::Status(401, status(401, Some("Unauthorized"), "Unauthorized", None))
}

/// 403 worded like the RBAC authorizer's denial.
pub(crate) fn forbidden(
    user: &str,
    verb: &str,
    resource: &str,
    group: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Failure {
    let subject = match name {
        Some(n) => format!("{} \"{n}\"", qualified(resource, group)),
        None => qualified(resource, group),
    };
    let scope = match namespace {
        Some(ns) => format!(" in the namespace \"{ns}\""),
        None => " at the cluster scope".to_string(),
    };
    let msg = format!(
        "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\"{scope}"
    );
    Failure::Status(
        403,
        status(
            403,
            Some("Forbidden"),
            &msg,
            Some(details(name, group, resource)),
        ),
    )
}

/// Seconds since the epoch as RFC 3339 (`2026-11-27T16:58:25Z`), the format of
/// `creationTimestamp` and `managedFields[].time`.
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, written out).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A random-looking RFC 4122 v4 uid; std's `RandomState` is the randomness source so the
/// crate needs no RNG dependency.
pub(crate) fn new_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
