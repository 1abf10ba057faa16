//! RFC 9421 as Outpost uses it: a signed heartbeat request and a signed assignment response, and every way
//! one can be tampered with, replayed, or malformed. Each rejection must name what failed.

use outpost_proto::digest::content_digest;
use outpost_proto::keys::{Pkcs8Document, PublicKey, SigningKey};
use outpost_proto::signature::{
    sign, verify, Message, SignatureError, SignatureParams, SignedFields, VerifyPolicy,
    REQUEST_COMPONENTS, RESPONSE_COMPONENTS,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;
/// A change to the request between signer and verifier.
type Change = fn(&mut Heartbeat);
/// The verifier's answer, inside the test's own setup errors.
type Verdict = Result<Result<(), SignatureError>, Box<dyn std::error::Error>>;
/// What a malformed-header case must produce.
type Expect = fn(&SignatureError) -> bool;

const NOW: i64 = 1_790_000_000;
const MAX_AGE: u64 = 300;
const MAX_SKEW: u64 = 60;
const LABEL: &str = "outpost";

/// The parts of a heartbeat request that the tests vary.
#[derive(Clone)]
struct Heartbeat {
    method: &'static str,
    uri: &'static str,
    content_type: Option<&'static str>,
    body: &'static [u8],
}

const HEARTBEAT: Heartbeat = Heartbeat {
    method: "POST",
    uri: "https://hub.example.com/v1/heartbeats",
    content_type: Some("application/json"),
    body: br#"{"schema":"outpost.heartbeat/v1","seq":7}"#,
};

impl Heartbeat {
    fn message(&self) -> Result<Message, SignatureError> {
        let mut message = Message::request_from_uri(self.method, self.uri)?;
        message.add_header("Content-Digest", &content_digest(self.body));
        if let Some(content_type) = self.content_type {
            message.add_header("Content-Type", content_type);
        }
        Ok(message)
    }

    fn sign(
        &self,
        key: &SigningKey,
        params: &SignatureParams,
    ) -> Result<SignedFields, SignatureError> {
        sign(&self.message()?, LABEL, REQUEST_COMPONENTS, params, key)
    }

    /// This request as the hub receives it, carrying `fields` signed over some (maybe other) request.
    fn received(&self, fields: &SignedFields) -> Result<Message, SignatureError> {
        Ok(self
            .message()?
            .with_header("Signature-Input", &fields.signature_input)
            .with_header("Signature", &fields.signature))
    }
}

fn agent_key() -> Result<SigningKey, Box<dyn std::error::Error>> {
    Ok(Pkcs8Document::generate()?.signing_key()?)
}

fn policy<'a>(key: &'a PublicKey, keyid: Option<&'a str>) -> VerifyPolicy<'a> {
    VerifyPolicy {
        label: LABEL,
        key,
        keyid,
        required_components: REQUEST_COMPONENTS,
        now: NOW,
        max_age: MAX_AGE,
        max_skew: MAX_SKEW,
    }
}

/// Signs the standard heartbeat, lets the test change what the hub receives, and returns the verdict.
fn verify_changed(change: impl FnOnce(&mut Heartbeat)) -> Verdict {
    let key = agent_key()?;
    let fields = HEARTBEAT.sign(&key, &SignatureParams::outpost(NOW, &key.public_key()))?;
    let mut received = HEARTBEAT.clone();
    change(&mut received);
    let public = key.public_key();
    let fingerprint = public.fingerprint();
    Ok(verify(
        &received.received(&fields)?,
        &policy(&public, Some(&fingerprint)),
    )
    .map(|_| ()))
}

#[test]
fn heartbeat_round_trip_verifies() -> TestResult {
    verify_changed(|_| {})??;
    Ok(())
}

#[test]
fn heartbeat_signature_input_uses_outpost_parameters() -> TestResult {
    let key = agent_key()?;
    let fields = HEARTBEAT.sign(&key, &SignatureParams::outpost(NOW, &key.public_key()))?;
    let expected = format!(
        "outpost=(\"@method\" \"@authority\" \"@path\" \"content-digest\" \"content-type\");created={NOW};keyid=\"{}\";alg=\"ed25519\"",
        key.public_key().fingerprint()
    );
    assert_eq!(fields.signature_input, expected);
    Ok(())
}

#[test]
fn each_changed_component_breaks_the_signature() -> TestResult {
    let changes: [(&str, Change); 5] = [
        ("method", |h| h.method = "PUT"),
        ("authority", |h| {
            h.uri = "https://evil.example.com/v1/heartbeats"
        }),
        ("path", |h| {
            h.uri = "https://hub.example.com/v1/heartbeats/other"
        }),
        ("content-digest", |h| {
            h.body = br#"{"schema":"outpost.heartbeat/v1","seq":8}"#
        }),
        ("content-type", |h| h.content_type = Some("text/plain")),
    ];
    for (what, change) in changes {
        let verdict = verify_changed(change)?;
        assert!(
            matches!(verdict, Err(SignatureError::BadSignature { .. })),
            "{what}: {verdict:?}"
        );
    }
    Ok(())
}

#[test]
fn uncovered_changes_do_not_matter() -> TestResult {
    // The query is not covered by Outpost's profile, and the default port is normalised away.
    verify_changed(|h| h.uri = "https://HUB.example.com:443/v1/heartbeats?ignored=1")??;
    Ok(())
}

#[test]
fn a_missing_covered_component_is_reported_by_name() -> TestResult {
    let verdict = verify_changed(|h| h.content_type = None)?;
    assert_eq!(
        verdict,
        Err(SignatureError::MissingComponent {
            component: "content-type".into()
        })
    );
    Ok(())
}

#[test]
fn another_key_is_rejected() -> TestResult {
    let (signer, other) = (agent_key()?, agent_key()?);
    let fields = HEARTBEAT.sign(
        &signer,
        &SignatureParams::outpost(NOW, &signer.public_key()),
    )?;
    let verdict = verify(
        &HEARTBEAT.received(&fields)?,
        &policy(&other.public_key(), None),
    );
    assert!(
        matches!(verdict, Err(SignatureError::BadSignature { .. })),
        "{verdict:?}"
    );
    // With the keyid pinned the mismatch shows before any cryptography.
    let fingerprint = other.public_key().fingerprint();
    let verdict = verify(
        &HEARTBEAT.received(&fields)?,
        &policy(&other.public_key(), Some(&fingerprint)),
    );
    assert!(
        matches!(verdict, Err(SignatureError::KeyId { .. })),
        "{verdict:?}"
    );
    Ok(())
}

fn verify_created_at(created: i64, expires: Option<i64>) -> Verdict {
    let key = agent_key()?;
    let params = SignatureParams {
        expires,
        ..SignatureParams::outpost(created, &key.public_key())
    };
    let fields = HEARTBEAT.sign(&key, &params)?;
    Ok(verify(
        &HEARTBEAT.received(&fields)?,
        &policy(&key.public_key(), None),
    )
    .map(|_| ()))
}

#[test]
fn created_must_be_recent_and_not_in_the_future() -> TestResult {
    let max_age = i64::try_from(MAX_AGE)?;
    let max_skew = i64::try_from(MAX_SKEW)?;
    verify_created_at(NOW - max_age, None)??;
    verify_created_at(NOW + max_skew, None)??;
    let too_old = verify_created_at(NOW - max_age - 1, None)?;
    assert!(
        matches!(too_old, Err(SignatureError::TooOld { age: 301, .. })),
        "{too_old:?}"
    );
    let future = verify_created_at(NOW + max_skew + 1, None)?;
    assert!(
        matches!(future, Err(SignatureError::InFuture { ahead: 61, .. })),
        "{future:?}"
    );
    let far_future = verify_created_at(999_999_999_999_999, None)?;
    assert!(
        matches!(far_future, Err(SignatureError::InFuture { .. })),
        "{far_future:?}"
    );
    let expired = verify_created_at(NOW - 100, Some(NOW - max_skew - 1))?;
    assert!(
        matches!(expired, Err(SignatureError::Expired { .. })),
        "{expired:?}"
    );
    Ok(())
}

#[test]
fn created_is_required() -> TestResult {
    let key = agent_key()?;
    let params = SignatureParams {
        created: None,
        ..SignatureParams::outpost(NOW, &key.public_key())
    };
    let fields = HEARTBEAT.sign(&key, &params)?;
    let verdict = verify(
        &HEARTBEAT.received(&fields)?,
        &policy(&key.public_key(), None),
    );
    assert_eq!(verdict, Err(SignatureError::NoCreated));
    Ok(())
}

#[test]
fn required_components_must_be_covered() -> TestResult {
    let key = agent_key()?;
    let params = SignatureParams::outpost(NOW, &key.public_key());
    let fields = sign(
        &HEARTBEAT.message()?,
        LABEL,
        &["@method", "@path"],
        &params,
        &key,
    )?;
    let verdict = verify(
        &HEARTBEAT.received(&fields)?,
        &policy(&key.public_key(), None),
    );
    assert!(
        matches!(verdict, Err(SignatureError::NotCovered { ref component, .. }) if component == "@authority")
    );
    Ok(())
}

#[test]
fn other_algorithms_are_refused() -> TestResult {
    let key = agent_key()?;
    let params = SignatureParams {
        alg: Some("hmac-sha256".into()),
        ..SignatureParams::outpost(NOW, &key.public_key())
    };
    let fields = HEARTBEAT.sign(&key, &params)?;
    let verdict = verify(
        &HEARTBEAT.received(&fields)?,
        &policy(&key.public_key(), None),
    );
    assert!(
        matches!(verdict, Err(SignatureError::Algorithm { .. })),
        "{verdict:?}"
    );
    Ok(())
}

/// Verifies the heartbeat carrying hand-written `Signature-Input` / `Signature` values.
fn verify_headers(
    input: Option<&str>,
    signature: Option<&str>,
    key: &PublicKey,
) -> Result<(), SignatureError> {
    let mut message = HEARTBEAT.message()?;
    if let Some(input) = input {
        message.add_header("Signature-Input", input);
    }
    if let Some(signature) = signature {
        message.add_header("Signature", signature);
    }
    verify(&message, &policy(key, None)).map(|_| ())
}

#[test]
fn malformed_signature_input_is_rejected_with_a_reason() -> TestResult {
    let key = agent_key()?;
    let public = key.public_key();
    let fields = HEARTBEAT.sign(&key, &SignatureParams::outpost(NOW, &public))?;
    let sig = fields.signature.as_str();
    let cases: [(&str, Expect); 12] = [
        ("outpost=(\"@method\" \"@path\"", |e| {
            matches!(e, SignatureError::MalformedHeader { .. })
        }),
        ("outpost=(@method);created=1", |e| {
            matches!(e, SignatureError::MalformedHeader { .. })
        }),
        ("outpost=(\"@method\"),", |e| {
            matches!(e, SignatureError::MalformedHeader { .. })
        }),
        ("outpost=(\"@method\");created=1,,x=1", |e| {
            matches!(e, SignatureError::MalformedHeader { .. })
        }),
        ("Outpost=(\"@method\")", |e| {
            matches!(e, SignatureError::MalformedHeader { .. })
        }),
        ("outpost=(\"caf\u{e9}\")", |e| {
            matches!(e, SignatureError::MalformedHeader { .. })
        }),
        ("outpost=\"@method\"", |e| {
            matches!(e, SignatureError::NotAnInnerList { .. })
        }),
        ("outpost=(\"@method\" 1);created=1", |e| {
            matches!(e, SignatureError::ComponentNotAString { index: 1 })
        }),
        ("outpost=(\"@method\");created=\"1\"", |e| {
            matches!(e, SignatureError::ParameterType { .. })
        }),
        ("outpost=(\"@method\");keyid=abc", |e| {
            matches!(e, SignatureError::ParameterType { .. })
        }),
        ("other=(\"@method\");created=1", |e| {
            matches!(e, SignatureError::LabelNotFound { .. })
        }),
        ("", |e| matches!(e, SignatureError::LabelNotFound { .. })),
    ];
    for (input, expected) in cases {
        match verify_headers(Some(input), Some(sig), &public) {
            Err(error) if expected(&error) => assert!(!error.to_string().is_empty()),
            other => return Err(format!("Signature-Input {input:?} gave {other:?}").into()),
        }
    }
    let missing = verify_headers(None, Some(sig), &public);
    assert_eq!(
        missing,
        Err(SignatureError::MissingHeader {
            header: "Signature-Input"
        })
    );
    Ok(())
}

#[test]
fn malformed_components_in_signature_input_are_rejected() -> TestResult {
    let key = agent_key()?;
    let public = key.public_key();
    let fields = HEARTBEAT.sign(&key, &SignatureParams::outpost(NOW, &public))?;
    let all = "\"@method\" \"@authority\" \"@path\" \"content-digest\" \"content-type\"";
    let cases: [(String, Expect); 5] = [
        (format!("outpost=({all} \"@method\");created={NOW}"), |e| {
            matches!(e, SignatureError::DuplicateComponent { .. })
        }),
        (
            format!("outpost=({all} \"@query\";sf);created={NOW}"),
            |e| matches!(e, SignatureError::ComponentParameters { .. }),
        ),
        (
            format!("outpost=({all} \"@signature-params\");created={NOW}"),
            |e| matches!(e, SignatureError::SignatureParamsCovered),
        ),
        (
            format!("outpost=({all} \"@request-target\");created={NOW}"),
            |e| matches!(e, SignatureError::UnsupportedComponent { .. }),
        ),
        (format!("outpost=({all} \"@status\");created={NOW}"), |e| {
            matches!(e, SignatureError::ComponentNotApplicable { .. })
        }),
    ];
    for (input, expected) in cases {
        match verify_headers(Some(&input), Some(&fields.signature), &public) {
            Err(error) if expected(&error) => {}
            other => return Err(format!("Signature-Input {input:?} gave {other:?}").into()),
        }
    }
    Ok(())
}

#[test]
fn malformed_signature_is_rejected_with_a_reason() -> TestResult {
    let key = agent_key()?;
    let public = key.public_key();
    let fields = HEARTBEAT.sign(&key, &SignatureParams::outpost(NOW, &public))?;
    let input = fields.signature_input.as_str();
    let cases: [(&str, Expect); 8] = [
        ("outpost=:AAAA", |e| {
            matches!(
                e,
                SignatureError::MalformedHeader {
                    header: "Signature",
                    ..
                }
            )
        }),
        ("outpost=:!!!!:", |e| {
            matches!(e, SignatureError::MalformedHeader { .. })
        }),
        ("outpost=:A:", |e| {
            matches!(e, SignatureError::MalformedHeader { .. })
        }),
        ("outpost=:AAAA:", |e| {
            matches!(e, SignatureError::NotASignature { .. })
        }),
        ("outpost=abc", |e| {
            matches!(e, SignatureError::NotASignature { .. })
        }),
        ("outpost=(:AAAA:)", |e| {
            matches!(e, SignatureError::NotASignature { .. })
        }),
        ("outpost", |e| {
            matches!(e, SignatureError::NotASignature { .. })
        }),
        ("sig1=:AAAA:", |e| {
            matches!(e, SignatureError::LabelNotFound { .. })
        }),
    ];
    for (signature, expected) in cases {
        match verify_headers(Some(input), Some(signature), &public) {
            Err(error) if expected(&error) => {}
            other => return Err(format!("Signature {signature:?} gave {other:?}").into()),
        }
    }
    let missing = verify_headers(Some(input), None, &public);
    assert_eq!(
        missing,
        Err(SignatureError::MissingHeader {
            header: "Signature"
        })
    );
    // 64 bytes, but not a signature of this base.
    let zeros = format!("outpost=:{}:", "A".repeat(86) + "==");
    let forged = verify_headers(Some(input), Some(&zeros), &public);
    assert!(
        matches!(forged, Err(SignatureError::BadSignature { .. })),
        "{forged:?}"
    );
    Ok(())
}

#[test]
fn another_signers_spacing_and_extra_signatures_are_accepted() -> TestResult {
    let key = agent_key()?;
    let public = key.public_key();
    let fields = HEARTBEAT.sign(&key, &SignatureParams::outpost(NOW, &public))?;
    let spaced = fields
        .signature_input
        .replacen("=(", "=(  ", 1)
        .replace("\" \"", "\"   \"");
    let input = format!("proxy=(\"@method\");created=1, {spaced}");
    let signature = format!("proxy=:AAAA:,\t{}", fields.signature);
    verify_headers(Some(&input), Some(&signature), &public)?;
    Ok(())
}

#[test]
fn a_header_value_cannot_inject_a_line_into_the_base() -> TestResult {
    let key = agent_key()?;
    let message = HEARTBEAT
        .message()?
        .with_header("X-Note", "ok\n\"@path\": /other");
    let result = sign(
        &message,
        LABEL,
        &["x-note"],
        &SignatureParams::outpost(NOW, &key.public_key()),
        &key,
    );
    assert!(
        matches!(result, Err(SignatureError::InvalidComponentValue { .. })),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn response_signature_round_trip_covers_the_status() -> TestResult {
    let hub = agent_key()?;
    let body = br#"{"schema":"outpost.assignment/v1","generation":3,"sources":[]}"#;
    let response = |status| {
        Message::response(status)
            .with_header("Content-Type", "application/json")
            .with_header("Content-Digest", &content_digest(body))
    };
    let fields = sign(
        &response(200),
        "hub",
        RESPONSE_COMPONENTS,
        &SignatureParams::outpost(NOW, &hub.public_key()),
        &hub,
    )?;
    assert!(
        fields.base.starts_with("\"@status\": 200\n"),
        "{}",
        fields.base
    );
    let public = hub.public_key();
    let fingerprint = public.fingerprint();
    let policy = VerifyPolicy {
        label: "hub",
        keyid: Some(&fingerprint),
        required_components: RESPONSE_COMPONENTS,
        ..policy(&public, None)
    };
    let received = |status| {
        response(status)
            .with_header("Signature-Input", &fields.signature_input)
            .with_header("Signature", &fields.signature)
    };
    let verified = verify(&received(200), &policy)?;
    assert_eq!(verified.components, RESPONSE_COMPONENTS);
    let changed = verify(&received(201), &policy);
    assert!(
        matches!(changed, Err(SignatureError::BadSignature { .. })),
        "{changed:?}"
    );
    // A response cannot be signed over request components.
    let wrong = sign(
        &response(200),
        "hub",
        REQUEST_COMPONENTS,
        &SignatureParams::default(),
        &hub,
    );
    assert!(
        matches!(wrong, Err(SignatureError::ComponentNotApplicable { .. })),
        "{wrong:?}"
    );
    Ok(())
}
