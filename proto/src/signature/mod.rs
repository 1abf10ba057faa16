//! RFC 9421 HTTP Message Signatures with Ed25519, for requests (heartbeats) and responses (assignments).
//!
//! Signing builds the signature base (§2.5) from the covered components of a [`Message`], signs it, and
//! returns the `Signature-Input` and `Signature` field values as structured-field dictionaries. Verifying finds
//! one labelled signature in those fields, rebuilds the base from the message *as received* and checks, in
//! order: the algorithm, the key id, that every component the policy requires is covered, the signature
//! itself, and then the clock (`created` not too old nor too far in the future, `expires` not past).
//!
//! Invariants:
//! - the `@signature-params` line is the canonical serialisation of the parsed `Signature-Input` member, so a
//!   verifier accepts any RFC 9421 signer's spacing and parameter order, including parameters it does not know;
//! - only the component forms listed in [`Message::component_value`] are signed or verified; anything else
//!   (component parameters such as `;sf` or `;req`, `@query-param`, `@request-target`) is an explicit error
//!   rather than a base that another implementation would build differently;
//! - nothing here panics on what a peer sent.

mod message;

use crate::keys::{PublicKey, SigningKey};
use crate::sfv::{
    self, BareItem, Dictionary, InnerList, Item, ListEntry, Parameters, ParseError, SerializeError,
};

pub use message::Message;

/// Header carrying the covered components and parameters.
pub const SIGNATURE_INPUT: &str = "signature-input";
/// Header carrying the signature bytes.
pub const SIGNATURE: &str = "signature";
/// The `alg` value for Ed25519 (RFC 9421 §3.3.6).
pub const ALG_ED25519: &str = "ed25519";
/// What Outpost covers on a heartbeat request (DESIGN.md § Heartbeat).
pub const REQUEST_COMPONENTS: &[&str] = &[
    "@method",
    "@authority",
    "@path",
    "content-digest",
    "content-type",
];
/// What Outpost covers on the hub's signed reply.
pub const RESPONSE_COMPONENTS: &[&str] = &["@status", "content-digest", "content-type"];

/// Why a message could not be signed, or why its signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the message has no {header} header; sign the message (RFC 9421) before sending it")]
    MissingHeader { header: &'static str },
    #[error("the {header} header is malformed ({source}); it must be an RFC 8941 dictionary such as {example}")]
    MalformedHeader {
        header: &'static str,
        example: &'static str,
        #[source]
        source: ParseError,
    },
    #[error("the {header} header has no signature labelled {label:?} (labels present: {found}); sign with that label")]
    LabelNotFound {
        header: &'static str,
        label: String,
        found: String,
    },
    #[error("Signature-Input member {label:?} is not an inner list of quoted component names, like (\"@method\" \"@path\")")]
    NotAnInnerList { label: String },
    #[error("Signature-Input: covered component #{index} is not a quoted string like \"@method\"")]
    ComponentNotAString { index: usize },
    #[error("Signature member {label:?} is not a byte sequence of 64 bytes (:base64:), as an ed25519 signature must be")]
    NotASignature { label: String },
    #[error("signature parameter {name:?} must be {expected}")]
    ParameterType {
        name: String,
        expected: &'static str,
    },
    #[error("covered component {component:?} has parameters (like ;sf or ;req), which outpost does not support; cover the plain name")]
    ComponentParameters { component: String },
    #[error("component {component:?} is covered twice; list each component once")]
    DuplicateComponent { component: String },
    #[error("\"@signature-params\" cannot be a covered component; it is always the last line of the base")]
    SignatureParamsCovered,
    #[error("component {component:?} is not supported; use @method, @authority, @path, @target-uri, @scheme, @query, @status or a header name")]
    UnsupportedComponent { component: String },
    #[error("component {component:?} does not exist on a {kind}")]
    ComponentNotApplicable {
        component: String,
        kind: &'static str,
    },
    #[error(
        "component {component:?} must be lowercase: header names are lowercased in signatures"
    )]
    UppercaseComponent { component: String },
    #[error("covered component {component:?} is missing from the message: the signer covered it, so it must be sent")]
    MissingComponent { component: String },
    #[error("component {component:?} contains a control character (line break?), which cannot be signed")]
    InvalidComponentValue { component: String },
    #[error("the signature does not cover {component:?}; the signer must cover {required}")]
    NotCovered { component: String, required: String },
    #[error("the signature's alg is {alg:?}; outpost verifies \"ed25519\" signatures only")]
    Algorithm { alg: String },
    #[error("the signature's keyid is {found:?}, expected {expected:?}: the message was signed with another key")]
    KeyId {
        expected: String,
        found: Option<String>,
    },
    #[error("the signature has no `created` parameter; outpost requires one to bound replays")]
    NoCreated,
    #[error("the signature was created at {created}, {age}s before now ({now}), beyond the {max_age}s allowed: a replay, or the signer's clock is behind")]
    TooOld {
        created: i64,
        now: i64,
        age: i128,
        max_age: u64,
    },
    #[error("the signature was created at {created}, {ahead}s after now ({now}), beyond the {max_skew}s clock skew allowed: check NTP on both hosts")]
    InFuture {
        created: i64,
        now: i64,
        ahead: i128,
        max_skew: u64,
    },
    #[error("the signature expired at {expires}, and now is {now}; sign the message again")]
    Expired { expires: i64, now: i64 },
    #[error("the signature does not verify with key {fingerprint}: the covered parts of the message changed after signing, or another key signed it")]
    BadSignature { fingerprint: String },
    #[error("cannot serialise the signature fields: {0}")]
    Serialize(#[from] SerializeError),
    #[error("{uri:?} is not an absolute URI for signing: {problem}")]
    Uri { uri: String, problem: &'static str },
}

/// The signature parameters of RFC 9421 §2.3, serialised in this field order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureParams {
    /// Unix seconds.
    pub created: Option<i64>,
    /// Unix seconds.
    pub expires: Option<i64>,
    pub keyid: Option<String>,
    pub alg: Option<String>,
    pub nonce: Option<String>,
    pub tag: Option<String>,
}

impl SignatureParams {
    /// Outpost's parameters: `created`, `keyid` = the key's fingerprint, `alg="ed25519"`.
    pub fn outpost(created: i64, key: &PublicKey) -> Self {
        SignatureParams {
            created: Some(created),
            keyid: Some(key.fingerprint()),
            alg: Some(ALG_ED25519.to_owned()),
            ..SignatureParams::default()
        }
    }

    fn to_sfv(&self) -> Result<Parameters, SerializeError> {
        let mut params = Parameters::new();
        let integers = [("created", self.created), ("expires", self.expires)];
        for (name, value) in integers {
            if let Some(value) = value {
                params.insert(sfv::key(name)?, BareItem::Integer(sfv::integer(value)?));
            }
        }
        let strings = [
            ("keyid", &self.keyid),
            ("alg", &self.alg),
            ("nonce", &self.nonce),
            ("tag", &self.tag),
        ];
        for (name, value) in strings {
            if let Some(value) = value {
                params.insert(sfv::key(name)?, BareItem::String(sfv::string(value)?));
            }
        }
        Ok(params)
    }

    /// Reads the known parameters; unknown ones stay in the base (through the inner list) but have no meaning.
    fn from_sfv(params: &Parameters) -> Result<Self, SignatureError> {
        let mut out = SignatureParams::default();
        for (name, value) in params {
            let name = name.as_str();
            let type_error = |expected| SignatureError::ParameterType {
                name: name.to_owned(),
                expected,
            };
            match (name, value) {
                ("created", BareItem::Integer(n)) => out.created = Some(i64::from(*n)),
                ("expires", BareItem::Integer(n)) => out.expires = Some(i64::from(*n)),
                ("created" | "expires", _) => return Err(type_error("an integer (Unix seconds)")),
                ("keyid", BareItem::String(s)) => out.keyid = Some(s.as_str().to_owned()),
                ("alg", BareItem::String(s)) => out.alg = Some(s.as_str().to_owned()),
                ("nonce", BareItem::String(s)) => out.nonce = Some(s.as_str().to_owned()),
                ("tag", BareItem::String(s)) => out.tag = Some(s.as_str().to_owned()),
                ("keyid" | "alg" | "nonce" | "tag", _) => {
                    return Err(type_error("a quoted string"))
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// The two header values to add to a signed message, and the base that was signed (for diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFields {
    /// Value of `Signature-Input`, e.g. `sig=("@method");created=1;keyid="k"`.
    pub signature_input: String,
    /// Value of `Signature`, e.g. `sig=:base64:`.
    pub signature: String,
    pub base: String,
}

/// Signs `components` of `message` under `label`. Each header value holds one dictionary member; to add a
/// second signature to a message that already has one, join the values with `", "`.
pub fn sign(
    message: &Message,
    label: &str,
    components: &[&str],
    params: &SignatureParams,
    key: &SigningKey,
) -> Result<SignedFields, SignatureError> {
    let items = components
        .iter()
        .map(|c| Ok(Item::new(BareItem::String(sfv::string(c)?))))
        .collect::<Result<Vec<_>, SerializeError>>()?;
    let input = InnerList::with_params(items, params.to_sfv()?);
    let label = sfv::key(label)?;
    let base = signature_base(message, &input)?;
    let signature = key.sign(base.as_bytes());

    let mut input_field = Dictionary::new();
    input_field.insert(label.clone(), ListEntry::InnerList(input));
    let mut signature_field = Dictionary::new();
    signature_field.insert(
        label,
        ListEntry::Item(Item::new(BareItem::ByteSequence(signature.to_vec()))),
    );
    Ok(SignedFields {
        signature_input: sfv::serialize_dictionary(&input_field),
        signature: sfv::serialize_dictionary(&signature_field),
        base,
    })
}

/// The signature base (RFC 9421 §2.5) for the covered components and parameters in `input`.
pub fn signature_base(message: &Message, input: &InnerList) -> Result<String, SignatureError> {
    let mut base = String::new();
    let mut seen: Vec<&str> = Vec::with_capacity(input.items.len());
    for (index, item) in input.items.iter().enumerate() {
        let BareItem::String(component) = &item.bare_item else {
            return Err(SignatureError::ComponentNotAString { index });
        };
        let component = component.as_str();
        if !item.params.is_empty() {
            return Err(SignatureError::ComponentParameters {
                component: component.to_owned(),
            });
        }
        if component == "@signature-params" {
            return Err(SignatureError::SignatureParamsCovered);
        }
        if seen.contains(&component) {
            return Err(SignatureError::DuplicateComponent {
                component: component.to_owned(),
            });
        }
        seen.push(component);
        let value = message.component_value(component)?;
        base.push_str(&sfv::serialize_bare_item(&item.bare_item));
        base.push_str(": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&sfv::serialize_inner_list(input));
    Ok(base)
}

/// What a verifier accepts.
#[derive(Debug, Clone)]
pub struct VerifyPolicy<'a> {
    /// The signature label to check (other labels in the fields are ignored).
    pub label: &'a str,
    /// The only key whose signature is accepted.
    pub key: &'a PublicKey,
    /// When set, the signature's `keyid` must equal it (Outpost uses the key's fingerprint).
    pub keyid: Option<&'a str>,
    /// Components the signature must cover, e.g. [`REQUEST_COMPONENTS`].
    pub required_components: &'a [&'a str],
    /// The verifier's clock, Unix seconds.
    pub now: i64,
    /// How old `created` may be, in seconds.
    pub max_age: u64,
    /// How far `created` may lie in the future, and `expires` in the past, in seconds.
    pub max_skew: u64,
}

/// A signature that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub components: Vec<String>,
    pub params: SignatureParams,
}

/// Verifies the signature `policy.label` on `message` (which must carry `Signature-Input` and `Signature`).
pub fn verify(message: &Message, policy: &VerifyPolicy<'_>) -> Result<Verified, SignatureError> {
    let label = policy.label;
    let input = signature_input(message, label)?;
    let signature = signature_bytes(message, label)?;
    let params = SignatureParams::from_sfv(&input.params)?;
    let mut components = Vec::with_capacity(input.items.len());
    for (index, item) in input.items.iter().enumerate() {
        match &item.bare_item {
            BareItem::String(name) => components.push(name.as_str().to_owned()),
            _ => return Err(SignatureError::ComponentNotAString { index }),
        }
    }

    if let Some(alg) = &params.alg {
        if alg != ALG_ED25519 {
            return Err(SignatureError::Algorithm { alg: alg.clone() });
        }
    }
    if let Some(expected) = policy.keyid {
        if params.keyid.as_deref() != Some(expected) {
            return Err(SignatureError::KeyId {
                expected: expected.to_owned(),
                found: params.keyid,
            });
        }
    }
    for required in policy.required_components {
        if !components.iter().any(|c| c == required) {
            return Err(SignatureError::NotCovered {
                component: (*required).to_owned(),
                required: policy.required_components.join(" "),
            });
        }
    }

    let base = signature_base(message, &input)?;
    if !policy.key.verify(base.as_bytes(), &signature) {
        return Err(SignatureError::BadSignature {
            fingerprint: policy.key.fingerprint(),
        });
    }

    let created = params.created.ok_or(SignatureError::NoCreated)?;
    let now = policy.now;
    let age = i128::from(now) - i128::from(created);
    if age > i128::from(policy.max_age) {
        return Err(SignatureError::TooOld {
            created,
            now,
            age,
            max_age: policy.max_age,
        });
    }
    if -age > i128::from(policy.max_skew) {
        return Err(SignatureError::InFuture {
            created,
            now,
            ahead: -age,
            max_skew: policy.max_skew,
        });
    }
    if let Some(expires) = params.expires {
        if i128::from(now) > i128::from(expires) + i128::from(policy.max_skew) {
            return Err(SignatureError::Expired { expires, now });
        }
    }
    Ok(Verified { components, params })
}

fn signature_input(message: &Message, label: &str) -> Result<InnerList, SignatureError> {
    let example = "sig=(\"@method\" \"@path\");created=1700000000;keyid=\"...\"";
    match labelled_member(message, SIGNATURE_INPUT, "Signature-Input", example, label)? {
        ListEntry::InnerList(list) => Ok(list),
        ListEntry::Item(_) => Err(SignatureError::NotAnInnerList {
            label: label.to_owned(),
        }),
    }
}

fn signature_bytes(message: &Message, label: &str) -> Result<Vec<u8>, SignatureError> {
    match labelled_member(
        message,
        SIGNATURE,
        "Signature",
        "sig=:<base64 of 64 bytes>:",
        label,
    )? {
        ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(bytes),
            ..
        }) if bytes.len() == 64 => Ok(bytes),
        _ => Err(SignatureError::NotASignature {
            label: label.to_owned(),
        }),
    }
}

fn labelled_member(
    message: &Message,
    name: &'static str,
    header: &'static str,
    example: &'static str,
    label: &str,
) -> Result<ListEntry, SignatureError> {
    let value = message
        .header(name)
        .ok_or(SignatureError::MissingHeader { header })?;
    let mut dictionary =
        sfv::parse_dictionary(&value).map_err(|source| SignatureError::MalformedHeader {
            header,
            example,
            source,
        })?;
    dictionary.swap_remove(label).ok_or_else(|| {
        let labels: Vec<&str> = dictionary.keys().map(|k| k.as_str()).collect();
        let found = if labels.is_empty() {
            "none".to_owned()
        } else {
            labels.join(", ")
        };
        SignatureError::LabelNotFound {
            header,
            label: label.to_owned(),
            found,
        }
    })
}
