//! Text from outside (an agent's heartbeat, a repository's file names, a Git server's error) made safe to show
//! a person: on a terminal, in a status table, or as one line of a text log.
//!
//! A file named `ESC]0;…BEL ESC[2J … CR.yaml` ends up in a `last_error`; printed raw, it retitles the operator's
//! terminal, clears the screen and overwrites lines, and in a text log its newline starts a forged log line.
//! [`printable`] writes every such character as a visible escape instead:
//! - C0 controls (U+0000–U+001F, which include ESC, BEL, CR, LF, TAB), DEL (U+007F) and C1 controls
//!   (U+0080–U+009F, where CSI and OSC also live) — Rust's `char::is_control`;
//! - the Unicode line and paragraph separators (U+2028, U+2029), which some terminals and log viewers break on;
//! - bidirectional controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which make a line read
//!   differently from what it holds.
//!
//! `\n`, `\r` and `\t` become those two-character escapes, every other one `\u{…}` (Rust's notation), so an
//! escaped ESC reads `\u{1b}`. Everything else, including a backslash, is kept as is: the result is for a person
//! to read, not to be parsed back; text that needs no escape is returned borrowed, without a copy.

use std::borrow::Cow;

/// `text` with every character that could act on a terminal or a log line written as a visible escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    let Some(first) = text.find(needs_escape) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Like [`printable`], but keeps line feeds: for displays where a multi-line message may span lines and a line
/// cannot be mistaken for a record of its own (an HTML table cell, a block of text under a heading).
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    let Some(first) = text.find(|c| c != '\n' && needs_escape(c)) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if c == '\n' {
            out.push(c);
        } else {
            push_escaped(&mut out, c);
        }
    }
    Cow::Owned(out)
}

/// Whether `c` is one of the characters [`printable`] escapes.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            out.push_str("\\u{");
            out.push_str(&format!("{:x}", u32::from(c)));
            out.push('}');
        }
        c => out.push(c),
    }
}

/// An error and its causes, each cause after `separator` unless the text already holds it: wrappers such as
/// reqwest's ("error sending request") hide the cause an operator needs ("invalid peer certificate:
/// UnknownIssuer"). The agent joins them on one line (`": "`), the hub's command line one per line.
pub fn error_chain(error: &dyn std::error::Error, separator: &str) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let cause_text = c.to_string();
        if !text.contains(&cause_text) {
            text.push_str(separator);
            text.push_str(&cause_text);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|w| w as _)
        }
    }

    #[test]
    fn an_error_chain_names_each_cause_once() {
        let inner = Wrapped("invalid peer certificate: UnknownIssuer", None);
        let middle = Wrapped("client error (Connect)", Some(Box::new(inner)));
        let outer = Wrapped(
            "error sending request: client error (Connect)",
            Some(Box::new(middle)),
        );
        assert_eq!(
            error_chain(&outer, ": "),
            "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(
            error_chain(&outer, "\n  caused by: "),
            "error sending request: client error (Connect)\n  caused by: invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in [
            "",
            "apps/deploy.yaml",
            "naïve café ✓ 東京",
            r"C:\path with \n literally",
        ] {
            assert!(
                matches!(printable(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
            assert!(
                matches!(printable_lines(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }

    #[test]
    fn terminal_sequences_are_made_visible() {
        // Set the window title, clear the screen, return to the line's start and overwrite it.
        let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2J ok\rFAKE";
        let shown = printable(hostile);
        assert_eq!(shown, "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J ok\\rFAKE");
        assert!(!shown.chars().any(needs_escape), "{shown}");
    }

    #[test]
    fn every_control_class_is_escaped() {
        assert_eq!(printable("a\nb\tc\0d"), "a\\nb\\tc\\u{0}d");
        assert_eq!(printable("del\u{7f}"), "del\\u{7f}");
        // C1: CSI and OSC as single code points, which some terminals obey like ESC [ and ESC ].
        assert_eq!(printable("\u{9b}2J\u{9d}0;x"), "\\u{9b}2J\\u{9d}0;x");
        assert_eq!(printable("a\u{2028}b"), "a\\u{2028}b");
        // "Trojan source": a right-to-left override makes the rest of the line read backwards.
        assert_eq!(printable("x\u{202e}lmay.exe"), "x\\u{202e}lmay.exe");
        // The neighbours of the escaped ranges are ordinary text.
        for kept in [
            '\u{a0}', '\u{2027}', '\u{202f}', '\u{2065}', '\u{206a}', ' ', '~',
        ] {
            assert!(!needs_escape(kept), "{kept:?}");
        }
    }

    #[test]
    fn a_value_cannot_forge_a_log_line() {
        let forged = "bad.yaml\n2026-12-05T22:00:00Z  INFO outpost: all sources Ready";
        let shown = printable(forged);
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(shown.ends_with("all sources Ready"), "{shown}");
    }

    #[test]
    fn lines_variant_keeps_only_line_feeds() {
        assert_eq!(
            printable_lines("one\ntwo\r\nthree\u{1b}[1m"),
            "one\ntwo\\r\nthree\\u{1b}[1m"
        );
    }
}
