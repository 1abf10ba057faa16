//! One test per family of scalars that some YAML 1.1 or 1.2 reader resolves to something other than a string.
//! Each checks the quoting decision and that serde_yaml_ng reads the written document back exactly; the
//! end-to-end suite (`tests/tests/directory_yaml.rs`) reads the same families back with PyYAML, a YAML 1.1 reader.

use serde_json::{json, Value};

use super::*;

/// Writes `{"k": s, "list": [s], s: "key"}` and reads it back with serde_yaml_ng.
fn round_trip(value: &Value) -> Value {
    let text = document(value);
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot read back {value}: {e}\n{text}"));
    serde_json::to_value(yaml).unwrap()
}

/// Every string of a family is quoted, as a value, an item and a key, and reads back as itself.
fn family_is_quoted(family: &str, strings: &[&str]) {
    for s in strings {
        let written = string(s);
        assert!(
            written.starts_with('\'') || written.starts_with('"'),
            "{family}: {s:?} was written plain as {written}"
        );
        let value = json!({"k": s, "list": [s, {"k": s}], *s: "key"});
        assert_eq!(round_trip(&value), value, "{family}: {s:?}");
    }
}

#[test]
fn booleans_in_every_spelling_and_case() {
    let mut words = Vec::new();
    for word in ["y", "n", "yes", "no", "on", "off", "true", "false"] {
        words.push(word.to_string());
        words.push(word.to_uppercase());
        let mut title = word.to_string();
        title[..1].make_ascii_uppercase();
        words.push(title);
    }
    words.extend(["yEs".to_string(), "oFF".into(), "tRUE".into()]);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    family_is_quoted("bool", &words);
}

#[test]
fn null_spellings_and_the_empty_string() {
    family_is_quoted("null", &["~", "null", "Null", "NULL", "nUll", "", "nil"]);
}

#[test]
fn integers_in_every_base_and_form() {
    family_is_quoted(
        "int",
        &[
            "0",
            "1",
            "-1",
            "+1",
            "1_000",
            "0o17",
            "0O17",
            "017",
            "0x1F",
            "0X1f",
            "0b101",
            "-0b1",
            "+0x_1F",
            "1:20",
            "-1:20:30",
            "190:20:30",
            "00",
            "1__0",
            "9223372036854775808",
        ],
    );
}

#[test]
fn floats_in_every_form() {
    family_is_quoted(
        "float",
        &[
            "1e3",
            "1E3",
            "1e+3",
            "1.0e-3",
            ".5",
            "-.5",
            "+.5",
            "5.",
            "1.5",
            "1_000.5",
            "1:20:30.5",
            ".inf",
            "-.inf",
            "+.INF",
            ".Inf",
            ".nan",
            ".NaN",
            ".NAN",
            "inf",
            "Infinity",
            "NaN",
            "nan",
            "0.",
            "-0.0",
            "6.8523015e+5",
            "685.230_15e+03",
        ],
    );
}

#[test]
fn timestamps() {
    family_is_quoted(
        "timestamp",
        &[
            "2001-12-14",
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14 21:59:43.10 -5",
            "2001-12-15T02:59:43.1Z",
            "2002-12-14",
            "2001-1-1",
        ],
    );
}

#[test]
fn merge_value_and_indicator_starts() {
    let mut strings = vec!["<<".to_string(), "=".into(), "---".into(), "...".into()];
    for indicator in "-?:,[]{}#&*!|>'\"%@`".chars() {
        strings.push(indicator.to_string());
        strings.push(format!("{indicator}x"));
        strings.push(format!("{indicator} x"));
    }
    let strings: Vec<&str> = strings.iter().map(String::as_str).collect();
    family_is_quoted("indicator", &strings);
}

#[test]
fn spaces_colons_and_comments() {
    family_is_quoted(
        "spaces",
        &[
            " x",
            "x ",
            " ",
            "  ",
            "a: b",
            "a:",
            "a #b",
            "a#b",
            "key: value: more",
            "a\tb",
            "\t",
            "http://x y: z",
        ],
    );
}

#[test]
fn control_and_line_break_characters() {
    family_is_quoted(
        "control",
        &[
            "\0",
            "a\u{1}b",
            "\u{7f}",
            "\u{85}",
            "a\u{2028}b",
            "\u{2029}",
            "\u{feff}x",
            "\r",
            "a\rb",
            "\u{1b}[0m",
            "\u{9f}",
            "\u{ffff}",
            "\n",
        ],
    );
    assert_eq!(string("a\u{1}b"), "\"a\\x01b\"");
    assert_eq!(string("\u{2028}"), "\"\\u2028\"");
    assert_eq!(string("back\\slash \"q\""), "'back\\slash \"q\"'");
    assert_eq!(string("tab\t\\"), "\"tab\\t\\\\\"");
}

#[test]
fn strings_that_stay_plain() {
    for s in [
        "web",
        "nginx:1.25",
        "registry.example.com/team/app:v1.2.3",
        "app.kubernetes.io/managed-by",
        "hello world",
        "KEY=value",
        "v1",
        "e3",
        "yes-please",
        "Nope",
        "on1",
        "http://example.com:8080/x",
        "a_b-c.d",
    ] {
        assert_eq!(string(s), s, "{s:?} needs no quotes");
        let value = json!({ s: s });
        assert_eq!(round_trip(&value), value);
    }
}

#[test]
fn non_ascii_is_written_as_it_is_in_quotes() {
    for s in ["café", "日本語", "emoji 🚀", "\u{a0}", "Ω=1"] {
        assert!(string(s).starts_with('\''), "{s:?}: {}", string(s));
        let value = json!({ s: [s] });
        assert_eq!(round_trip(&value), value);
    }
}

#[test]
fn numbers_booleans_and_null_stay_unquoted_and_typed() {
    let value = json!({
        "int": 3, "neg": -42, "big": u64::MAX, "min": i64::MIN, "zero": 0,
        "float": 1.5, "whole": 1.0, "tiny": 1e-7, "huge": 1e300, "negexp": -2.5e-300, "negzero": -0.0,
        "t": true, "f": false, "null": null,
    });
    let text = document(&value);
    for line in [
        "int: 3\n",
        "neg: -42\n",
        "whole: 1.0\n",
        "tiny: 1.0e-7\n",
        "huge: 1.0e+300\n",
        "t: true\n",
        "'null': null\n",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert_eq!(round_trip(&value), value);
}

#[test]
fn multi_line_strings_use_literal_blocks_only_when_exact() {
    let value = json!({"data": {"conf": "a: 1\n  b: [2]\n\n# not a comment\n", "strip": "x\ny"}});
    assert_eq!(
        document(&value),
        "data:\n  conf: |\n    a: 1\n      b: [2]\n\n    # not a comment\n  strip: |-\n    x\n    y\n"
    );
    assert_eq!(round_trip(&value), value);
    for s in [
        "\nleading newline",
        " indented first\nline",
        "two\n\n",
        "trailing space \nx",
        "tab\tinside\nx",
        "cr\r\nlf",
        "nel\u{85}\nx",
        "---\n...\n",
        "x\n   \ny",
    ] {
        let value = json!({"k": s, "in": [s]});
        assert_eq!(round_trip(&value), value, "{s:?}");
    }
    assert!(document(&json!({"k": "\nx"})).contains("k: \"\\nx\""));
}

#[test]
fn nesting_empty_collections_and_long_keys() {
    let long = "k".repeat(LONG_KEY + 1);
    let value = json!({
        "empty_map": {}, "empty_list": [], "nested": [[1, [2, []]], [{}], {"a": [{"b": {"c": "d"}}]}],
        long.clone(): {"x": 1}, "after": [long.clone()], "long_list": {long: ["y"]},
    });
    let text = document(&value);
    assert!(
        text.contains("empty_map: {}\n") && text.contains("empty_list: []\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("? {}\n:\n", "k".repeat(LONG_KEY + 1))),
        "{text}"
    );
    assert_eq!(round_trip(&value), value);
    let top = json!([["a"], {"b": "c"}, "yes"]);
    assert_eq!(round_trip(&top), top);
    for scalar in [json!("no"), json!(1), json!(null), json!({}), json!([])] {
        assert_eq!(round_trip(&scalar), scalar);
    }
}

#[test]
fn float_text_always_has_a_dot_and_a_signed_exponent() {
    assert_eq!(float(1e300), "1.0e+300");
    assert_eq!(float(1.5e-7), "1.5e-7");
    assert_eq!(float(2.0), "2.0");
    assert_eq!(float(0.1), "0.1");
    assert_eq!(float(-1e16), "-1.0e+16");
    for f in [
        1e300,
        1.5e-7,
        123456.789,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
    ] {
        assert_eq!(float(f).parse::<f64>().unwrap(), f);
    }
}
