//! What the wire parser decides on its own: the precise error it names, what JSON Schema cannot say (repeated
//! keys, integers with a fraction, unique names), and the size bounds checked before parsing.

mod wire_fixtures;

use outpost_proto::wire::{
    parse_assignment, parse_heartbeat, SourceState, SourceStatus, WireError, HEARTBEAT_JSON_SCHEMA,
    MAX_BODY_BYTES, MAX_SOURCES,
};
use serde_json::{json, Value};
use wire_fixtures::{assignment, heartbeat, validator};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn the_parser_names_the_precise_problem() -> TestResult {
    let body = |doc: Value| serde_json::to_vec(&doc);
    let mut doc = serde_json::to_value(heartbeat())?;
    doc["seq"] = json!(0);
    assert_eq!(parse_heartbeat(&body(doc)?), Err(WireError::ZeroSeq));

    let mut doc = serde_json::to_value(heartbeat())?;
    doc["schema"] = json!("outpost.heartbeat/v9");
    assert!(matches!(
        parse_heartbeat(&body(doc)?),
        Err(WireError::Schema { .. })
    ));

    let mut doc = serde_json::to_value(heartbeat())?;
    doc["sources"][1]["fetched_revision"] = json!("main");
    let error = parse_heartbeat(&body(doc)?);
    assert!(
        matches!(&error, Err(WireError::Revision { field, .. }) if field == "sources[1].fetched_revision"),
        "{error:?}"
    );

    let mut doc = serde_json::to_value(heartbeat())?;
    doc["sources"][0]["inventory_digest"] = json!("md5:abc");
    assert!(matches!(
        parse_heartbeat(&body(doc)?),
        Err(WireError::Digest { .. })
    ));

    let mut doc = serde_json::to_value(heartbeat())?;
    doc["sources"][2]["name"] = json!("Bad_Name");
    assert!(matches!(
        parse_heartbeat(&body(doc)?),
        Err(WireError::SourceName { .. })
    ));

    let mut doc = serde_json::to_value(heartbeat())?;
    doc["sources"][2]["name"] = json!("platform");
    assert_eq!(
        parse_heartbeat(&body(doc)?),
        Err(WireError::DuplicateSource {
            name: "platform".into()
        })
    );

    let mut doc = serde_json::to_value(assignment())?;
    doc["sources"][0]["semver"] = json!("^1");
    let error = parse_assignment(&body(doc)?);
    assert!(
        matches!(&error, Err(WireError::RefKinds { found, .. }) if found == "branch and semver"),
        "{error:?}"
    );

    let mut doc = serde_json::to_value(assignment())?;
    doc["sources"][0]["auth"]["token"] = json!("ghp_s3cret");
    let error = parse_assignment(&body(doc)?);
    assert!(
        matches!(&error, Err(WireError::UnknownField { message, .. }) if message.contains("`token`")),
        "{error:?}"
    );
    assert!(
        !format!("{error:?}").contains("ghp_s3cret"),
        "the secret must not be echoed"
    );

    let mut doc = serde_json::to_value(assignment())?;
    doc["sources"][0]["url"] = json!("https://bot:ghp_s3cret@git.example.com/x.git");
    let error = parse_assignment(&body(doc)?);
    assert!(
        matches!(&error, Err(WireError::UrlPassword { .. })),
        "{error:?}"
    );
    assert!(!error
        .map(drop)
        .unwrap_err()
        .to_string()
        .contains("ghp_s3cret"));

    let mut doc = serde_json::to_value(assignment())?;
    doc["generation"] = json!(0);
    assert_eq!(
        parse_assignment(&body(doc)?),
        Err(WireError::ZeroGeneration)
    );
    Ok(())
}

#[test]
fn what_only_the_parser_can_refuse() -> TestResult {
    // JSON Schema accepts these (its integers include 7.0, it cannot compare items by one property, and a
    // JSON value keeps the last of repeated keys); the parser refuses them, so the parser is the stricter.
    let heartbeat_schema = validator(HEARTBEAT_JSON_SCHEMA)?;
    let mut doc = serde_json::to_value(heartbeat())?;
    doc["seq"] = json!(7.0);
    assert!(heartbeat_schema.is_valid(&doc));
    assert!(matches!(
        parse_heartbeat(&serde_json::to_vec(&doc)?),
        Err(WireError::Json { .. })
    ));

    let mut doc = serde_json::to_value(heartbeat())?;
    doc["sources"][1]["name"] = json!("platform");
    assert!(heartbeat_schema.is_valid(&doc));
    assert!(matches!(
        parse_heartbeat(&serde_json::to_vec(&doc)?),
        Err(WireError::DuplicateSource { .. })
    ));

    let text = String::from_utf8(heartbeat().to_body()?)?.replacen(
        "\"seq\":1234",
        "\"seq\":1234,\"seq\":99",
        1,
    );
    assert!(heartbeat_schema.is_valid(&serde_json::from_str(&text)?));
    assert!(matches!(
        parse_heartbeat(text.as_bytes()),
        Err(WireError::Json { .. })
    ));
    Ok(())
}

#[test]
fn size_bounds_are_enforced_when_parsing() -> TestResult {
    let heartbeat_schema = validator(HEARTBEAT_JSON_SCHEMA)?;
    let mut many = heartbeat();
    many.sources = (0..MAX_SOURCES)
        .map(|i| SourceStatus::new(format!("s{i}"), SourceState::Ready))
        .collect();
    let body = many.to_body()?;
    assert!(body.len() <= MAX_BODY_BYTES);
    assert_eq!(parse_heartbeat(&body)?.sources.len(), MAX_SOURCES);

    many.sources
        .push(SourceStatus::new("one-more", SourceState::Ready));
    let body = serde_json::to_vec(&many)?;
    assert!(!heartbeat_schema.is_valid(&serde_json::from_slice(&body)?));
    assert!(
        matches!(parse_heartbeat(&body), Err(WireError::TooManySources { count, .. }) if count == MAX_SOURCES + 1)
    );
    assert!(matches!(
        many.to_body(),
        Err(WireError::TooManySources { .. })
    ));

    // A body over 1 MiB is refused on its length alone, even when it is valid JSON with few sources.
    let mut big = heartbeat();
    big.agent_version = "x".into();
    let padding = " ".repeat(MAX_BODY_BYTES);
    let text = format!("{}{padding}", String::from_utf8(big.to_body()?)?);
    assert!(matches!(
        parse_heartbeat(text.as_bytes()),
        Err(WireError::TooLarge { len, max: MAX_BODY_BYTES, .. }) if len == text.len()
    ));
    assert!(matches!(
        parse_assignment(text.as_bytes()),
        Err(WireError::TooLarge { .. })
    ));
    Ok(())
}
