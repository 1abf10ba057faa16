//! The RFC 8941 subset: canonical forms survive a round trip, and malformed fields are errors, never panics.

use outpost_proto::sfv::{
    serialize_bare_item, BareItem, Decimal, Dictionary, Item, Member, SerializeError,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn round_trip(input: &str) -> Result<String, Box<dyn std::error::Error>> {
    Ok(Dictionary::parse(input)?.serialize()?)
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
    let dictionary = Dictionary::parse("a=-999999999999999, b=999999999999.999, c=0.5")?;
    assert_eq!(
        dictionary.get("a"),
        Some(&Member::Item(Item::new(BareItem::Integer(
            -999_999_999_999_999
        ))))
    );
    let thousandths = 999_999_999_999_999;
    assert_eq!(
        dictionary.get("b"),
        Some(&Member::Item(Item::new(BareItem::Decimal(Decimal {
            thousandths
        }))))
    );
    assert_eq!(
        dictionary.get("c"),
        Some(&Member::Item(Item::new(BareItem::Decimal(Decimal {
            thousandths: 500
        }))))
    );
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
    ] {
        assert!(
            Dictionary::parse(bad).is_err(),
            "{bad:?} should be rejected"
        );
    }
}

#[test]
fn unserialisable_values_are_errors() {
    let mut dictionary = Dictionary::default();
    dictionary.insert(
        "a",
        Member::Item(Item::new(BareItem::String("line\nbreak".into()))),
    );
    assert!(matches!(
        dictionary.serialize(),
        Err(SerializeError::String(_))
    ));
    let mut dictionary = Dictionary::default();
    dictionary.insert("Bad", Member::Item(Item::new(BareItem::Integer(1))));
    assert!(matches!(
        dictionary.serialize(),
        Err(SerializeError::Key(_))
    ));
    assert!(serialize_bare_item(&BareItem::Integer(1_000_000_000_000_000)).is_err());
    assert!(serialize_bare_item(&BareItem::Token("1abc".into())).is_err());
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
            let _ = Dictionary::parse(field.get(..end).unwrap_or_default());
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
        if let Ok(dictionary) = Dictionary::parse(&input) {
            // Whatever parses must serialise and parse back to the same value.
            let canonical = dictionary.serialize()?;
            assert_eq!(
                Dictionary::parse(&canonical).ok(),
                Some(dictionary),
                "{input:?}"
            );
        }
    }
    Ok(())
}
