//! The helpers the agent and hub call: a heartbeat request and an assignment reply signed and checked end to
//! end, with the digest and the signature each doing their part when something changed on the way.

use outpost_proto::digest::{content_digest, DigestError};
use outpost_proto::keys::{Pkcs8Document, SigningKey};
use outpost_proto::signature::{
    sign, Message, SignatureError, SignatureParams, REQUEST_COMPONENTS, RESPONSE_COMPONENTS,
};
use outpost_proto::signed::{
    sign_request, sign_response, verify_request, verify_response, Freshness, Headers,
    ReceivedRequest, ReceivedResponse, SignedMessageError, LABEL,
};
use outpost_proto::wire::{Assignment, Heartbeat, SourceState, SourceStatus};

type TestResult = Result<(), Box<dyn std::error::Error>>;
/// Header lines as a receiver collected them: `(name, value)`.
type Lines = [(String, String)];

const NOW: i64 = 1_790_000_000;
const JSON: &str = "application/json";
const AUTHORITY: &str = "hub.example.com";
const PATH: &str = "/v1/heartbeats";

fn key() -> Result<SigningKey, Box<dyn std::error::Error>> {
    Ok(Pkcs8Document::generate()?.signing_key()?)
}

fn heartbeat_body() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let heartbeat = Heartbeat {
        schema: outpost_proto::HEARTBEAT_SCHEMA.into(),
        agent_id: "store-042".into(),
        seq: 7,
        boot_id: "6f1c1d2e-8a4b-4c3d-9e8f-0a1b2c3d4e5f".into(),
        observed_at: "2026-09-21T14:13:20Z".into(),
        agent_version: "0.1.0".into(),
        assignment_generation: 0,
        dropped: 0,
        sources: vec![SourceStatus::new("platform", SourceState::Ready)],
        assignment_error: None,
    };
    Ok(heartbeat.to_body()?)
}

/// The header lines a receiver sees: what the signer added, plus the content type the caller sends.
fn lines(signed: &Headers, content_type: &str) -> Vec<(String, String)> {
    let mut lines: Vec<(String, String)> = signed
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    lines.push(("Content-Type".into(), content_type.into()));
    lines
}

fn borrowed(lines: &Lines) -> Vec<(&str, &str)> {
    lines
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

fn check_request(
    method: &str,
    authority: &str,
    path: &str,
    lines: &Lines,
    body: &[u8],
    key: &SigningKey,
    now: i64,
) -> Result<(), SignedMessageError> {
    let headers = borrowed(lines);
    let request = ReceivedRequest {
        method,
        authority,
        path,
        headers: &headers,
        body,
    };
    verify_request(&request, &key.public_key(), now, Freshness::default()).map(drop)
}

#[test]
fn a_signed_heartbeat_verifies() -> TestResult {
    let key = key()?;
    let body = heartbeat_body()?;
    let signed = sign_request("POST", AUTHORITY, PATH, &body, JSON, &key, NOW)?;
    let names: Vec<&str> = signed.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["Content-Digest", "Signature-Input", "Signature"]);
    assert_eq!(signed[0].1, content_digest(&body));
    let fingerprint = key.public_key().fingerprint();
    assert_eq!(
        signed[1].1,
        format!(
            "{LABEL}=(\"@method\" \"@authority\" \"@path\" \"content-digest\" \"content-type\");\
             created={NOW};keyid=\"{fingerprint}\";alg=\"ed25519\""
        )
    );

    let lines = lines(&signed, JSON);
    let headers = borrowed(&lines);
    let request = ReceivedRequest {
        method: "POST",
        authority: AUTHORITY,
        path: PATH,
        headers: &headers,
        body: &body,
    };
    let verified = verify_request(&request, &key.public_key(), NOW + 10, Freshness::default())?;
    assert_eq!(verified.components, REQUEST_COMPONENTS);
    assert_eq!(verified.params.keyid.as_deref(), Some(fingerprint.as_str()));
    assert_eq!(verified.params.created, Some(NOW));
    Ok(())
}

#[test]
fn header_names_and_host_case_do_not_matter() -> TestResult {
    let key = key()?;
    let body = heartbeat_body()?;
    let signed = sign_request("POST", "Hub.Example.com:8443", PATH, &body, JSON, &key, NOW)?;
    let lower: Vec<(String, String)> = lines(&signed, JSON)
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    check_request(
        "POST",
        "hub.example.com:8443",
        PATH,
        &lower,
        &body,
        &key,
        NOW,
    )?;
    // The query is not covered, so a proxy adding one does not break the signature.
    check_request(
        "POST",
        "hub.example.com:8443",
        "/v1/heartbeats?trace=1",
        &lower,
        &body,
        &key,
        NOW,
    )?;
    Ok(())
}

#[test]
fn a_body_changed_after_signing_is_rejected() -> TestResult {
    let key = key()?;
    let body = heartbeat_body()?;
    let signed = sign_request("POST", AUTHORITY, PATH, &body, JSON, &key, NOW)?;
    let tampered = String::from_utf8(body)?.replace("\"seq\":7", "\"seq\":8");
    let lines = lines(&signed, JSON);
    let result = check_request(
        "POST",
        AUTHORITY,
        PATH,
        &lines,
        tampered.as_bytes(),
        &key,
        NOW,
    );
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Digest(DigestError::Mismatch { .. }))
        ),
        "{result:?}"
    );

    // Recomputing the digest for the new body does not help: the signature covers the digest header.
    let mut lines = lines;
    lines[0].1 = content_digest(tampered.as_bytes());
    let result = check_request(
        "POST",
        AUTHORITY,
        PATH,
        &lines,
        tampered.as_bytes(),
        &key,
        NOW,
    );
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Signature(
                SignatureError::BadSignature { .. }
            ))
        ),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn each_covered_request_part_is_protected() -> TestResult {
    let key = key()?;
    let body = heartbeat_body()?;
    let signed = sign_request("POST", AUTHORITY, PATH, &body, JSON, &key, NOW)?;
    let good = lines(&signed, JSON);
    let other_type = lines(&signed, "text/plain");
    let cases: [(&str, &str, &str, &Lines); 4] = [
        ("PUT", AUTHORITY, PATH, &good),
        ("POST", "evil.example.com", PATH, &good),
        ("POST", AUTHORITY, "/v1/agents", &good),
        ("POST", AUTHORITY, PATH, &other_type),
    ];
    for (method, authority, path, lines) in cases {
        let result = check_request(method, authority, path, lines, &body, &key, NOW);
        assert!(
            matches!(
                result,
                Err(SignedMessageError::Signature(
                    SignatureError::BadSignature { .. }
                ))
            ),
            "{method} {authority}{path}: {result:?}"
        );
    }
    Ok(())
}

#[test]
fn another_key_is_rejected() -> TestResult {
    let key = key()?;
    let other = self::key()?;
    let body = heartbeat_body()?;
    let signed = sign_request("POST", AUTHORITY, PATH, &body, JSON, &other, NOW)?;
    let result = check_request(
        "POST",
        AUTHORITY,
        PATH,
        &lines(&signed, JSON),
        &body,
        &key,
        NOW,
    );
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Signature(SignatureError::KeyId { .. }))
        ),
        "{result:?}"
    );

    // Another key that claims our key id still fails on the signature itself.
    let message = Message::request("POST", "", AUTHORITY, PATH, None)
        .with_header("Content-Digest", &content_digest(&body))
        .with_header("Content-Type", JSON);
    let params = SignatureParams::outpost(NOW, &key.public_key());
    let forged = sign(&message, LABEL, REQUEST_COMPONENTS, &params, &other)?;
    let lines: Vec<(String, String)> = vec![
        ("Content-Digest".into(), content_digest(&body)),
        ("Content-Type".into(), JSON.into()),
        ("Signature-Input".into(), forged.signature_input),
        ("Signature".into(), forged.signature),
    ];
    let result = check_request("POST", AUTHORITY, PATH, &lines, &body, &key, NOW);
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Signature(
                SignatureError::BadSignature { .. }
            ))
        ),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn missing_headers_and_stale_signatures_are_rejected() -> TestResult {
    let key = key()?;
    let body = heartbeat_body()?;
    let signed = sign_request("POST", AUTHORITY, PATH, &body, JSON, &key, NOW)?;
    let all = lines(&signed, JSON);

    let without = |name: &str| -> Vec<(String, String)> {
        all.iter().filter(|(n, _)| n != name).cloned().collect()
    };
    let result = check_request(
        "POST",
        AUTHORITY,
        PATH,
        &without("Content-Digest"),
        &body,
        &key,
        NOW,
    );
    assert_eq!(result, Err(SignedMessageError::MissingContentDigest));
    let result = check_request(
        "POST",
        AUTHORITY,
        PATH,
        &without("Signature"),
        &body,
        &key,
        NOW,
    );
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Signature(
                SignatureError::MissingHeader { .. }
            ))
        ),
        "{result:?}"
    );
    let result = check_request(
        "POST",
        AUTHORITY,
        PATH,
        &without("Content-Type"),
        &body,
        &key,
        NOW,
    );
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Signature(
                SignatureError::MissingComponent { .. }
            ))
        ),
        "{result:?}"
    );

    let late = NOW + 301;
    let result = check_request("POST", AUTHORITY, PATH, &all, &body, &key, late);
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Signature(SignatureError::TooOld { .. }))
        ),
        "{result:?}"
    );
    let early = NOW - 301;
    let result = check_request("POST", AUTHORITY, PATH, &all, &body, &key, early);
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Signature(
                SignatureError::InFuture { .. }
            ))
        ),
        "{result:?}"
    );
    check_request("POST", AUTHORITY, PATH, &all, &body, &key, NOW + 300)?;
    check_request("POST", AUTHORITY, PATH, &all, &body, &key, NOW - 300)?;
    Ok(())
}

#[test]
fn a_signed_assignment_reply_verifies_and_resists_tampering() -> TestResult {
    let hub = key()?;
    let body = Assignment::new(3, Vec::new()).to_body()?;
    let signed = sign_response(200, &body, JSON, &hub, NOW)?;
    let lines = lines(&signed, JSON);
    let headers = borrowed(&lines);
    let check = |status: u16, body: &[u8], key: &SigningKey| {
        let response = ReceivedResponse {
            status,
            headers: &headers,
            body,
        };
        verify_response(&response, &key.public_key(), NOW, Freshness::default())
    };

    let verified = check(200, &body, &hub)?;
    assert_eq!(verified.components, RESPONSE_COMPONENTS);

    let result = check(201, &body, &hub);
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Signature(
                SignatureError::BadSignature { .. }
            ))
        ),
        "{result:?}"
    );
    let tampered = String::from_utf8(body.clone())?.replace("\"generation\":3", "\"generation\":4");
    let result = check(200, tampered.as_bytes(), &hub);
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Digest(DigestError::Mismatch { .. }))
        ),
        "{result:?}"
    );
    let result = check(200, &body, &key()?);
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Signature(SignatureError::KeyId { .. }))
        ),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn a_request_signature_is_not_a_response_signature() -> TestResult {
    let key = key()?;
    let body = heartbeat_body()?;
    let signed = sign_request("POST", AUTHORITY, PATH, &body, JSON, &key, NOW)?;
    let lines = lines(&signed, JSON);
    let headers = borrowed(&lines);
    let response = ReceivedResponse {
        status: 200,
        headers: &headers,
        body: &body,
    };
    let result = verify_response(&response, &key.public_key(), NOW, Freshness::default());
    assert!(
        matches!(
            result,
            Err(SignedMessageError::Signature(
                SignatureError::NotCovered { .. }
            ))
        ),
        "{result:?}"
    );
    Ok(())
}
