//! The YAML the directory target writes: every reader gets back exactly the JSON values of the bundle.
//!
//! k3s's and RKE2's deploy controllers, `kubectl apply -f` and kustomize (MicroShift) read manifests with a YAML
//! 1.1 resolver, where a plain `yes`, `off`, `1:20`, `0o17` or `2001-12-14` is a boolean, an integer or a
//! timestamp; other tools read YAML 1.2, where a plain `1e3` is a float and `0o17` an integer. A general-purpose
//! serialiser quotes what *its* YAML version would misread, which is not enough. So this emitter writes a string
//! plain only when it passes a whitelist that no resolver of either version can take for anything but a string
//! (an ASCII letter first, then only letters, digits and `_ . / - = :`-not-before-a-space and inner spaces, and
//! not a boolean, null or infinity word in any case), and quotes everything else: in single quotes when every
//! character is printable on one line, else in double quotes with only the escapes both versions define
//! (`\" \\ \n \t \r \xXX \uXXXX`; never `\/`, which YAML 1.1 lacks). Numbers and booleans of the source stay
//! unquoted; a float always carries a `.` and a signed exponent, the only float form both versions share.
//!
//! Why YAML and not JSON documents (which all three controllers would also read): operators read and diff these
//! files on the box, and a ConfigMap holding a config file is legible only as a literal block. A multi-line string
//! becomes a literal block (`|` or `|-`) only when that is provably exact: no tabs, no control or YAML 1.1
//! line-break characters, no trailing spaces on a line, a first line that starts with a visible character (so
//! the indentation is read from it) and at most one final newline; anything else is double-quoted on one line.
//!
//! Layout is block style with two-space indentation; sequences under a key are indented, maps and sequences in a
//! sequence are written compactly (`- key: value`, `- - item`). A key longer than [`LONG_KEY`] bytes is written as
//! an explicit `? key` entry, because readers only look 1024 characters ahead for the `:` of a simple key.

use serde_json::{Map, Number, Value};

/// Longest rendered key written as a simple `key: value` entry (PyYAML and libyaml allow 1024 characters).
pub const LONG_KEY: usize = 512;

/// Words that some YAML 1.1 or 1.2 resolver (or Go's float parser behind one) reads as a boolean, a null or a
/// float when written plain; compared case-insensitively, which is stricter than any resolver.
const RESERVED_WORDS: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nil", "inf", "infinity", "nan",
];

/// One YAML document body (without the `---` line) for `value`, ending with a newline.
pub fn document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

/// How a string is written on one line: plain when nothing can misread it, else quoted.
pub fn string(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else if is_single_quotable(s) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        double_quoted(s)
    }
}

/// A JSON number written so that YAML 1.1 and 1.2 both read it back as the same kind and value.
pub fn number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(f) => float(f),
        None => n.to_string(),
    }
}

/// The shortest text that parses back to `f`, with a `.` in the mantissa and a signed exponent if any:
/// `1e300` is a string to YAML 1.1 and `1e+300` lacks the dot its float pattern needs.
fn float(f: f64) -> String {
    let text = format!("{f:?}");
    match text.split_once('e') {
        None => text,
        Some((mantissa, exponent)) => {
            let mantissa = if mantissa.contains('.') {
                mantissa.to_string()
            } else {
                format!("{mantissa}.0")
            };
            let exponent = if exponent.starts_with('-') {
                exponent.to_string()
            } else {
                format!("+{exponent}")
            };
            format!("{mantissa}e{exponent}")
        }
    }
}

/// True when `s` can be written without quotes and every YAML 1.1 and 1.2 reader still reads this string.
pub fn is_plain_safe(s: &str) -> bool {
    let bytes = s.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    if !first.is_ascii_alphabetic() || bytes.last() == Some(&b' ') {
        return false;
    }
    for (i, b) in bytes.iter().enumerate() {
        let ok = match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'/' | b'-' | b'=' | b' ' => {
                true
            }
            // `a:b` is a string, but `a: b` and a final `:` are a mapping.
            b':' => bytes.get(i + 1).is_some_and(|next| *next != b' '),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    !RESERVED_WORDS
        .iter()
        .any(|word| word.eq_ignore_ascii_case(s))
}

/// Characters a reader takes as they are inside a quoted scalar on one line: YAML's printable set without the
/// line breaks (YAML 1.1 counts NEL, LS and PS as line breaks), tab and the byte-order mark.
fn is_plain_printable(c: char) -> bool {
    matches!(c, ' '..='~')
        || (c >= '\u{a0}'
            && !matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
            ))
}

fn is_single_quotable(s: &str) -> bool {
    s.chars().all(is_plain_printable)
}

/// `s` in double quotes with the escapes YAML 1.1 and 1.2 both define.
pub fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_plain_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02X}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// The lines of `s` and whether it ends with a newline, when a literal block reads back exactly as `s`.
fn literal_lines(s: &str) -> Option<(Vec<&str>, bool)> {
    if !s.contains('\n') {
        return None;
    }
    let (body, final_newline) = match s.strip_suffix('\n') {
        Some(body) => (body, true),
        None => (s, false),
    };
    let lines: Vec<&str> = body.split('\n').collect();
    let first_ok = lines
        .first()
        .and_then(|l| l.chars().next())
        .is_some_and(|c| c != ' ');
    // A last empty line means the text ended with two newlines; keeping them needs `|+`, which we avoid.
    let last_ok = lines.last().is_some_and(|l| !l.is_empty());
    let lines_ok = lines
        .iter()
        .all(|l| !l.ends_with(' ') && l.chars().all(is_plain_printable));
    (first_ok && last_ok && lines_ok).then_some((lines, final_newline))
}

/// A scalar (or an empty collection) on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A non-empty map whose first key goes where the cursor is (column `indent`, or after `- `).
fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            pad(out, indent);
        }
        let key = string(key);
        if key.len() > LONG_KEY {
            out.push_str("? ");
            out.push_str(&key);
            out.push('\n');
            pad(out, indent);
        } else {
            out.push_str(&key);
        }
        out.push(':');
        write_value(out, value, indent, false);
    }
}

/// A non-empty sequence whose first `-` goes where the cursor is.
fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            pad(out, indent);
        }
        out.push('-');
        write_value(out, item, indent, true);
    }
}

/// The node after a `key:` or a `-` at column `indent`, through its last newline. In a sequence (`compact`) a
/// nested collection starts on the same line.
fn write_value(out: &mut String, value: &Value, indent: usize, compact: bool) {
    let inner = indent + 2;
    match value {
        Value::Object(map) if !map.is_empty() => {
            if compact {
                out.push(' ');
            } else {
                out.push('\n');
                pad(out, inner);
            }
            write_map(out, map, inner);
        }
        Value::Array(items) if !items.is_empty() => {
            if compact {
                out.push(' ');
            } else {
                out.push('\n');
                pad(out, inner);
            }
            write_seq(out, items, inner);
        }
        Value::String(s) => match literal_lines(s) {
            Some((lines, final_newline)) => {
                out.push_str(if final_newline { " |\n" } else { " |-\n" });
                for line in lines {
                    if !line.is_empty() {
                        pad(out, inner);
                        out.push_str(line);
                    }
                    out.push('\n');
                }
            }
            None => {
                out.push(' ');
                out.push_str(&string(s));
                out.push('\n');
            }
        },
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests;
