//! Sealed stubs: how an object that holds a decrypted value is kept in the store.
//!
//! A stub keeps what the agent needs without opening it (apiVersion, kind, name, namespace: the object's identity
//! for inventories, pruning and `outpost check`) and the whole object encrypted with age for the source's own
//! identity. The stub's digest stands for the object everywhere a digest is kept, so no hash of a secret is
//! stored either.

use base64::Engine;
use serde_json::{Map, Value};

use super::SecretsError;
use crate::bundle::{self, Bundle};
use crate::sops::Identities;

/// The field of a stub that holds the sealed object. Not a valid Kubernetes field, so a stub that reached a
/// target by mistake would be refused by the API server rather than applied.
pub const SEALED_KEY: &str = "outpost.dev/sealed";

/// Decrypted values shorter than this are not searched for in other objects: "1" or "yes" would match
/// everywhere. Secrets are sealed whatever their values.
const MIN_REVEALED_LEN: usize = 4;

/// The store's copy of `bundle`: every object that holds a decrypted value (every Secret, and any object in which
/// a value from `revealed` appears, as written or base64-encoded) replaced by a sealed stub. `None` when nothing
/// needed sealing, so the bundle itself is stored.
pub fn seal(
    bundle: &Bundle,
    identities: &Identities,
    revealed: &[String],
) -> Result<Option<Bundle>, SecretsError> {
    let needles = needles(revealed);
    let mut sealed_any = false;
    let mut objects = Vec::with_capacity(bundle.objects.len());
    for object in &bundle.objects {
        if !holds_secret(object, &needles) {
            objects.push(object.clone());
            continue;
        }
        let plain = serde_json::to_vec(object).unwrap_or_default();
        let sealed = identities.seal(&plain).map_err(|e| SecretsError::Seal {
            object: describe(object),
            problem: e.to_string(),
        })?;
        let mut stub = identity_of(object);
        stub.insert(
            SEALED_KEY.into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(sealed)),
        );
        objects.push(Value::Object(stub));
        sealed_any = true;
    }
    Ok(sealed_any.then(|| Bundle::new(objects)))
}

/// The objects a target applies, from a stored bundle: each stub opened with `identities`. The digest stays the
/// stored one, which is the one the pass that built it recorded.
pub fn open(mut bundle: Bundle, identities: Option<&Identities>) -> Result<Bundle, SecretsError> {
    for object in bundle.objects.iter_mut() {
        let Some(sealed) = object.get(SEALED_KEY).and_then(Value::as_str) else {
            continue;
        };
        let Some(identities) = identities else {
            return Err(SecretsError::OpenWithout {
                object: describe(object),
            });
        };
        let fail = |problem: String| SecretsError::Open {
            object: describe(object),
            identities: identities.source().into(),
            problem,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|e| fail(format!("not base64: {e}")))?;
        let plain = identities
            .open_sealed(&bytes)
            .map_err(|e| fail(e.to_string()))?;
        let opened: Value =
            serde_json::from_slice(&plain).map_err(|e| fail(format!("not an object: {e}")))?;
        // A stub opens to the object it names, or the store was tampered with.
        if Value::Object(identity_of(&opened)) != Value::Object(identity_of(object)) {
            return Err(fail(format!(
                "it opens to {}, another object",
                describe(&opened)
            )));
        }
        *object = opened;
    }
    Ok(bundle)
}

/// `render` without `--show-secrets`: `stored` says which objects are secret (its stubs); in those, every value
/// outside apiVersion, kind and metadata is replaced by its length.
pub fn redact(bundle: &mut Bundle, stored: &Bundle) {
    for (object, kept) in bundle.objects.iter_mut().zip(&stored.objects) {
        if kept.get(SEALED_KEY).is_none() {
            continue;
        }
        if let Value::Object(fields) = object {
            for (key, value) in fields.iter_mut() {
                if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    redact_value(value);
                }
            }
        }
    }
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => map.values_mut().for_each(redact_value),
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::String(s) => {
            *s = format!("<{} bytes, hidden: outpost render --show-secrets>", s.len());
        }
        Value::Number(_) | Value::Bool(_) => {
            *value = Value::String("<hidden: outpost render --show-secrets>".into());
        }
        Value::Null => {}
    }
}

/// What to search built objects for: each decrypted value long enough to mean something, and its base64 form
/// (how a Secret's `data` and kustomize's secretGenerator carry it).
fn needles(revealed: &[String]) -> Vec<String> {
    let mut needles: Vec<String> = revealed
        .iter()
        .filter(|v| v.len() >= MIN_REVEALED_LEN)
        .flat_map(|v| {
            [
                v.clone(),
                base64::engine::general_purpose::STANDARD.encode(v.as_bytes()),
            ]
        })
        .collect();
    needles.sort();
    needles.dedup();
    needles
}

fn holds_secret(object: &Value, needles: &[String]) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("Secret")
        || (!needles.is_empty() && any_string(object, &|s| needles.iter().any(|n| s.contains(n))))
}

fn any_string(value: &Value, hit: &dyn Fn(&str) -> bool) -> bool {
    match value {
        Value::String(s) => hit(s),
        Value::Array(items) => items.iter().any(|v| any_string(v, hit)),
        Value::Object(map) => map.iter().any(|(k, v)| hit(k) || any_string(v, hit)),
        _ => false,
    }
}

/// apiVersion, kind, and metadata's name and namespace: what may be known of a sealed object without opening it.
fn identity_of(object: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(v) = object.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let mut metadata = Map::new();
    for key in ["name", "namespace"] {
        if let Some(v) = object.get("metadata").and_then(|m| m.get(key)) {
            metadata.insert(key.into(), v.clone());
        }
    }
    out.insert("metadata".into(), Value::Object(metadata));
    out
}

fn describe(object: &Value) -> String {
    bundle::identity(object).unwrap_or_else(|_| "an object without a name".into())
}
