//! The wire types against their JSON Schemas: what the Rust types write, the schema accepts; every document one
//! of them refuses, the other refuses too; and bodies survive a round trip unchanged.
//!
//! The schemas are checked with the `jsonschema` crate, draft 2020-12, with `format` assertions on, so the
//! published contract is tested by an independent validator rather than by our own reading of it. What only
//! the parser checks is in `wire_parser.rs`.

mod wire_fixtures;

use jsonschema::Validator;
use outpost_proto::wire::{
    parse_assignment, parse_heartbeat, Assignment, WireError, ASSIGNMENT_JSON_SCHEMA,
    HEARTBEAT_JSON_SCHEMA, MAX_ERROR_CHARS,
};
use serde_json::{json, Value};
use wire_fixtures::{assignment, heartbeat, validator, DIGEST, REV_A};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One change to a document, addressed by JSON Pointer.
enum Edit {
    Set(String, Value),
    Remove(String),
}

/// A case: what it tries, whether the document is valid, and the change from the base document.
type Case = (&'static str, bool, Edit);

fn set(pointer: &str, value: impl Into<Value>) -> Edit {
    Edit::Set(pointer.to_owned(), value.into())
}

fn remove(pointer: &str) -> Edit {
    Edit::Remove(pointer.to_owned())
}

fn ok(what: &'static str, edit: Edit) -> Case {
    (what, true, edit)
}

fn bad(what: &'static str, edit: Edit) -> Case {
    (what, false, edit)
}

fn repeat(n: usize, c: char) -> String {
    std::iter::repeat_n(c, n).collect()
}

fn apply(doc: &Value, edit: &Edit) -> Result<Value, String> {
    let mut doc = doc.clone();
    let pointer = match edit {
        Edit::Set(p, _) | Edit::Remove(p) => p,
    };
    let (parent, key) = pointer.rsplit_once('/').ok_or("bad pointer")?;
    let target = doc.pointer_mut(parent).ok_or(format!("no {parent}"))?;
    match (edit, target) {
        (Edit::Set(_, value), Value::Object(map)) => {
            map.insert(key.to_owned(), value.clone());
        }
        (Edit::Remove(_), Value::Object(map)) => {
            map.remove(key).ok_or(format!("no {pointer}"))?;
        }
        _ => return Err(format!("cannot edit {pointer}")),
    }
    Ok(doc)
}

/// Checks that the schema and the parser each give the expected verdict on each edited document.
fn check_agreement(
    validator: &Validator,
    base: &Value,
    parse: fn(&[u8]) -> Result<(), WireError>,
    cases: Vec<Case>,
) -> TestResult {
    let mut disagreements = Vec::new();
    for (what, valid, edit) in &cases {
        let doc = apply(base, edit)?;
        let schema_ok = validator.is_valid(&doc);
        let parser = parse(&serde_json::to_vec(&doc)?);
        if schema_ok != *valid || parser.is_ok() != *valid {
            disagreements.push(format!(
                "{what}: expected valid={valid}, schema said {schema_ok}, parser said {parser:?}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    Ok(())
}

#[test]
fn examples_validate_against_the_schemas_and_round_trip() -> TestResult {
    let heartbeat_schema = validator(HEARTBEAT_JSON_SCHEMA)?;
    let mut minimal = heartbeat();
    minimal.sources.clear();
    minimal.assignment_error = None;
    minimal.seq = u64::MAX;
    for example in [heartbeat(), minimal] {
        let body = example.to_body()?;
        let doc: Value = serde_json::from_slice(&body)?;
        let errors: Vec<String> = heartbeat_schema
            .iter_errors(&doc)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(parse_heartbeat(&body)?, example);
        assert!(!String::from_utf8(body)?.contains("null"));
    }

    let assignment_schema = validator(ASSIGNMENT_JSON_SCHEMA)?;
    for example in [assignment(), Assignment::new(1, Vec::new())] {
        let body = example.to_body()?;
        let doc: Value = serde_json::from_slice(&body)?;
        let errors: Vec<String> = assignment_schema
            .iter_errors(&doc)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(parse_assignment(&body)?, example);
    }
    Ok(())
}

#[test]
fn a_heartbeat_with_three_sources_fits_in_two_kib() -> TestResult {
    let mut example = heartbeat();
    example.sources.truncate(3);
    let body = example.to_body()?;
    assert!(body.len() < 2048, "{} bytes", body.len());
    Ok(())
}

#[test]
fn schema_and_parser_agree_on_heartbeats() -> TestResult {
    let mut cases = Vec::new();
    for field in [
        "/schema",
        "/agent_id",
        "/seq",
        "/boot_id",
        "/observed_at",
        "/agent_version",
        "/assignment_generation",
        "/dropped",
        "/sources",
        "/sources/0/name",
        "/sources/0/state",
        "/sources/0/object_count",
        "/assignment_error/generation",
        "/assignment_error/kind",
        "/assignment_error/reason",
    ] {
        cases.push(bad("missing required field", remove(field)));
    }
    for field in [
        "/sources/0/fetched_revision",
        "/sources/0/applied_revision",
        "/sources/0/last_good_revision",
        "/sources/1/last_error",
        "/sources/0/inventory_digest",
        "/assignment_error",
    ] {
        cases.push(ok("optional field absent", remove(field)));
        cases.push(bad("optional field null", set(field, Value::Null)));
    }
    let at = "/observed_at";
    let rev = "/sources/0/fetched_revision";
    let digest = "/sources/0/inventory_digest";
    let error = "/sources/1/last_error";
    let refusal = "/assignment_error";
    for kind in ["name_clash", "invalid_source", "not_newer", "bad_signature"] {
        cases.push(ok("each refusal kind", set("/assignment_error/kind", kind)));
    }
    cases.extend([
        bad(
            "refusal kind unknown",
            set("/assignment_error/kind", "NameClash"),
        ),
        bad("refusal kind not text", set("/assignment_error/kind", 1)),
        ok(
            "refused generation unreadable",
            set("/assignment_error/generation", 0),
        ),
        bad(
            "refused generation negative",
            set("/assignment_error/generation", -1),
        ),
        bad(
            "refusal extra field",
            set("/assignment_error/token", "s3cret"),
        ),
        bad("refusal not an object", set(refusal, "name clash")),
        bad(
            "refusal reason not text",
            set("/assignment_error/reason", 5),
        ),
        ok(
            "refusal reason at limit",
            set("/assignment_error/reason", repeat(MAX_ERROR_CHARS, 'é')),
        ),
        bad(
            "refusal reason too long",
            set("/assignment_error/reason", repeat(MAX_ERROR_CHARS + 1, 'r')),
        ),
    ]);
    cases.extend([
        bad("extra field", set("/extra", 1)),
        bad(
            "secret-looking source field",
            set("/sources/0/token", "s3cret"),
        ),
        bad("other schema", set("/schema", "outpost.heartbeat/v2")),
        bad("schema not a string", set("/schema", 1)),
        bad("seq 0", set("/seq", 0)),
        bad("negative seq", set("/seq", -1)),
        bad("seq as string", set("/seq", "1")),
        bad("seq fraction", set("/seq", 1.5)),
        bad("seq over u64", set("/seq", 1.8446744073709552e19)),
        ok("largest seq", set("/seq", u64::MAX)),
        bad("empty agent id", set("/agent_id", "")),
        bad("agent id with space", set("/agent_id", "a b")),
        ok("agent id 253", set("/agent_id", repeat(253, 'a'))),
        bad("agent id 254", set("/agent_id", repeat(254, 'a'))),
        bad("empty boot id", set("/boot_id", "")),
        bad("boot id with slash", set("/boot_id", "a/b")),
        ok("leap day", set(at, "2000-02-29T00:00:00Z")),
        ok("leap day 2024", set(at, "2024-02-29T23:59:59Z")),
        bad("no leap day in 1900", set(at, "1900-02-29T00:00:00Z")),
        bad("no leap day in 2026", set(at, "2026-02-29T00:00:00Z")),
        bad("april 31", set(at, "2026-04-31T12:00:00Z")),
        bad("month 13", set(at, "2026-13-01T12:00:00Z")),
        bad("offset", set(at, "2026-01-01T00:00:00+00:00")),
        bad("fraction", set(at, "2026-01-01T00:00:00.5Z")),
        bad("hour 24", set(at, "2026-01-01T24:00:00Z")),
        bad("leap second", set(at, "2016-12-31T23:59:60Z")),
        bad("lowercase z", set(at, "2026-01-01T00:00:00z")),
        bad("empty version", set("/agent_version", "")),
        bad("version line break", set("/agent_version", "1\n2")),
        bad("version non-ASCII", set("/agent_version", "1.0-é")),
        bad("version 129", set("/agent_version", repeat(129, 'v'))),
        bad("negative generation", set("/assignment_generation", -1)),
        ok("generation 0", set("/assignment_generation", 0)),
        bad("negative dropped", set("/dropped", -3)),
        bad("sources not a list", set("/sources", json!({}))),
        ok("no sources", set("/sources", json!([]))),
        bad("uppercase name", set("/sources/0/name", "Platform")),
        bad("name leading dash", set("/sources/0/name", "-a")),
        ok("name 63", set("/sources/0/name", repeat(63, 'n'))),
        bad("name 64", set("/sources/0/name", repeat(64, 'n'))),
        bad("empty name", set("/sources/0/name", "")),
        bad("lowercase state", set("/sources/0/state", "ready")),
        bad("unknown state", set("/sources/0/state", "Healthy")),
        bad("short revision", set(rev, &REV_A[..39])),
        bad("uppercase revision", set(rev, REV_A.to_uppercase())),
        bad(
            "symbolic revision",
            set("/sources/0/last_good_revision", "HEAD"),
        ),
        bad(
            "short applied revision",
            set("/sources/0/applied_revision", "0123abc"),
        ),
        ok("error at limit", set(error, repeat(MAX_ERROR_CHARS, 'é'))),
        bad(
            "error too long",
            set(error, repeat(MAX_ERROR_CHARS + 1, 'e')),
        ),
        bad("error not text", set(error, 5)),
        bad("negative count", set("/sources/0/object_count", -1)),
        bad(
            "digest prefix case",
            set(digest, DIGEST.replace("sha256", "SHA256")),
        ),
        bad(
            "digest other alg",
            set(digest, DIGEST.replace("sha256", "sha512")),
        ),
        bad("digest short", set(digest, &DIGEST[..70])),
        bad("digest uppercase", set(digest, DIGEST.to_uppercase())),
    ]);
    let validator = validator(HEARTBEAT_JSON_SCHEMA)?;
    let base = serde_json::to_value(heartbeat())?;
    check_agreement(&validator, &base, |b| parse_heartbeat(b).map(drop), cases)
}

#[test]
fn schema_and_parser_agree_on_assignments() -> TestResult {
    let mut cases = Vec::new();
    for field in [
        "/schema",
        "/generation",
        "/sources",
        "/sources/0/name",
        "/sources/0/url",
        "/sources/0/target",
    ] {
        cases.push(bad("missing required field", remove(field)));
    }
    for secret in ["token", "password", "ssh_key", "private_key", "secret"] {
        let in_auth = format!("/sources/0/auth/{secret}");
        cases.push(bad("secret value in auth", set(&in_auth, "s3cret")));
        let in_source = format!("/sources/0/{secret}");
        cases.push(bad("secret value in source", set(&in_source, "s3cret")));
    }
    let url = "/sources/0/url";
    let interval = "/sources/0/interval";
    let target = "/sources/0/target";
    cases.extend([
        bad("extra field", set("/signature", "x")),
        bad("other schema", set("/schema", "outpost.heartbeat/v1")),
        bad("generation 0", set("/generation", 0)),
        bad("negative generation", set("/generation", -1)),
        ok("no sources", set("/sources", json!([]))),
        bad("no ref", remove("/sources/0/branch")),
        bad("two refs", set("/sources/0/tag", "v1")),
        bad("ref null", set("/sources/1/branch", Value::Null)),
        bad("empty branch", set("/sources/0/branch", "")),
        bad("branch line break", set("/sources/0/branch", "a\nb")),
        ok("branch 255", set("/sources/0/branch", repeat(255, 'b'))),
        bad("branch 256", set("/sources/0/branch", repeat(256, 'b'))),
        bad("short commit", set("/sources/3/commit", &REV_A[..12])),
        bad(
            "uppercase commit",
            set("/sources/3/commit", REV_A.to_uppercase()),
        ),
        bad(
            "password in url",
            set(url, "https://bot:s3cret@git.example.com/x.git"),
        ),
        bad(
            "empty password in url",
            set(url, "https://bot:@git.example.com/x.git"),
        ),
        ok("user in url", set(url, "https://bot@git.example.com/x.git")),
        ok("colon after @ in path", set(url, "https://host/p@x:y")),
        bad("space in url", set(url, "https://host/a b")),
        bad("empty url", set(url, "")),
        bad("interval with space", set(interval, "1 m")),
        bad("fraction interval", set(interval, "1.5s")),
        bad("interval unit", set(interval, "1sec")),
        ok("interval ms", set(interval, "1m30s500ms")),
        bad("negative timeout", set("/sources/0/timeout", "-1s")),
        bad("empty timeout", set("/sources/0/timeout", "")),
        bad("relative directory", set(target, "directory:manifests")),
        bad("target typo", set(target, "Kubernetes")),
        bad(
            "uppercase namespace",
            set("/sources/0/namespace", "Default"),
        ),
        bad("prune as text", set("/sources/0/prune", "yes")),
        ok("empty path", set("/sources/0/path", "")),
        bad("path control", set("/sources/0/path", "a\tb")),
        bad(
            "relative token file",
            set("/sources/0/auth/token_file", "git-token"),
        ),
        bad(
            "token file null",
            set("/sources/0/auth/token_file", Value::Null),
        ),
        ok("empty auth", set("/sources/0/auth", json!({}))),
        bad("username alone", remove("/sources/2/auth/password_file")),
        bad("password file alone", remove("/sources/2/auth/username")),
        bad(
            "token and password",
            set("/sources/2/auth/token_file", "/t"),
        ),
        bad("ssh key alone", remove("/sources/1/auth/known_hosts_file")),
        ok("known hosts alone", remove("/sources/1/auth/ssh_key_file")),
        ok("renamed source", set("/sources/3/name", "pinned-2")),
    ]);
    let validator = validator(ASSIGNMENT_JSON_SCHEMA)?;
    let base = serde_json::to_value(assignment())?;
    check_agreement(&validator, &base, |b| parse_assignment(b).map(drop), cases)
}
