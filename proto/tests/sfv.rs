//! RFC 8941 as Outpost uses it through the `sfv` crate: canonical forms survive a round trip, malformed fields
//! (RFC 9651's dates and display strings among them) are errors with their offset, never panics.

use outpost_proto::sfv::{self, parse_dictionary, serialize_dictionary, BareItem, ListEntry};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn round_trip(input: &str) -> Result<String, Box<dyn std::error::Error>> {
    Ok(serialize_dictionary(&parse_dictionary(input)?))
}

#[test]
fn canonical_forms_survive_a_round_trip() -> TestResult {
    for canonical in [
        "",
        "a=1",
        "a=1, b=?0, c",
        "a;x=1;y, b=-42;z=\"q\"",
        "sig=(\"@method\" \"content-type\");created=1618884473;keyid=\"k\"",
        "a=(), b=(1 2);p",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "t=foo/bar:baz, d=1.5, e=-0.001, f=12.0",
        "s=\"a \\\"quoted\\\" \\\\ string\"",
        "*star=*tok",
    ] {
        assert_eq!(round_trip(canonical)?, canonical, "for {canonical:?}");
    }
    Ok(())
}

#[test]
fn whitespace_and_padding_normalise() -> TestResult {
    assert_eq!(
        round_trip("  a=( 1   2 ) ,\tb=:AAA:  ")?,
        "a=(1 2), b=:AAA=:"
    );
    // Non-zero pad bits are read, not refused, as RFC 8941 §4.2.7 asks of parsers; we always send canonical.
    assert_eq!(round_trip("b=:AAB:")?, "b=:AAA=:");
    Ok(())
}

#[test]
fn duplicates_keep_first_position_and_last_value() -> TestResult {
    assert_eq!(round_trip("a=1, b=2, a=3")?, "a=3, b=2");
    assert_eq!(round_trip("a;p=1;q;p=2")?, "a;p=2;q");
    Ok(())
}

#[test]
fn decimals_and_integers_keep_their_value() -> TestResult {
    let dictionary = parse_dictionary("a=-999999999999999, b=999999999999.999, c=0.5")?;
    let value = |key: &str| match dictionary.get(key) {
        Some(ListEntry::Item(item)) if item.params.is_empty() => Some(&item.bare_item),
        _ => None,
    };
    let integer = |item: Option<&BareItem>| item.and_then(|i| i.as_integer()).map(i64::from);
    let thousandths = |item: Option<&BareItem>| {
        item.and_then(|i| i.as_decimal())
            .map(|d| i64::from(d.as_integer_scaled_1000()))
    };
    assert_eq!(integer(value("a")), Some(-999_999_999_999_999));
    assert_eq!(thousandths(value("b")), Some(999_999_999_999_999));
    assert_eq!(thousandths(value("c")), Some(500));
    Ok(())
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    for bad in [
        "a=1,",
        "a=1, ",
        ",a=1",
        "A=1",
        "1a=1",
        "a=",
        "a=(1 2",
        "a=(1,2)",
        "a=(1  2)x",
        "a=\"unterminated",
        "a=\"bad \\n escape\"",
        "a=\"tab\there\"",
        "a=:not base64!:",
        "a=:AAA",
        "a=:A:",
        "a=?2",
        "a=?",
        "a=1234567890123456",
        "a=1234567890123.1",
        "a=1.1234",
        "a=1.",
        "a=-",
        "a=--1",
        "a=1 b=2",
        "a=1;",
        "a=1;B=2",
        "a=%",
        "a=\"caf\u{e9}\"",
        "a=@date",
        "a=1\n",
        // Valid RFC 9651, but RFC 9421 and RFC 9530 fields are RFC 8941: a date and a display string.
        "a=@1659578233",
        "a=%\"caf%c3%a9\"",
    ] {
        assert!(parse_dictionary(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn errors_say_where() {
    let error = parse_dictionary("a=1, b=?2").err();
    assert_eq!(error.as_ref().map(|e| e.offset), Some(8), "{error:?}");
    let error = parse_dictionary("a=1, b=@1659578233").err();
    assert_eq!(error.as_ref().map(|e| e.offset), Some(7), "{error:?}");
    assert_eq!(
        error.map(|e| e.to_string()).as_deref(),
        Some("malformed structured field at byte 7: RFC 8941 does not support dates")
    );
}

#[test]
fn unserialisable_values_are_errors() {
    let error = sfv::string("line\nbreak").err();
    assert_eq!(
        error.as_ref().map(|e| e.value.as_str()),
        Some("line\nbreak")
    );
    assert!(error.is_some_and(|e| e.to_string().contains("sf-string")));
    assert!(sfv::key("Bad").is_err());
    assert!(sfv::key("1a").is_err());
    assert!(sfv::integer(1_000_000_000_000_000).is_err());
    assert!(sfv::integer(-999_999_999_999_999).is_ok());
    assert!(sfv::Token::try_from("1abc".to_owned()).is_err());
}

/// Every prefix of valid fields, and many pseudo-random strings over the grammar's alphabet, parse to a value
/// or an error: never a panic. (A deterministic generator keeps failures reproducible.)
#[test]
fn no_input_panics() -> TestResult {
    let valid = [
        "sig-b26=(\"date\" \"@method\");created=1618884473;keyid=\"test-key-ed25519\", b=:AAAA:;x=?1",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, d=-12.345, t=*tok/en:x",
        "s=\"a \\\"b\\\" \\\\\", e=(), f=( 1  2 );p=\"q\"",
    ];
    for field in valid {
        for end in 0..=field.len() {
            let _ = parse_dictionary(field.get(..end).unwrap_or_default());
        }
    }
    let alphabet: Vec<char> = "abz09*-_.;=,() \t\"\\:?+/AZ!#%é\n".chars().collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut input = String::new();
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let length = (state >> 59) as usize;
        for _ in 0..length {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            input.extend(alphabet.get((state >> 33) as usize % alphabet.len()));
        }
        if let Ok(dictionary) = parse_dictionary(&input) {
            // Whatever parses must serialise and parse back to the same value, in the same order.
            let canonical = serialize_dictionary(&dictionary);
            let again = parse_dictionary(&canonical)?;
            assert_eq!(again, dictionary, "{input:?}");
            assert_eq!(serialize_dictionary(&again), canonical, "{input:?}");
        }
    }
    Ok(())
}
