//! Text from outside (file names, Git messages, the hub's words, error chains that quote them) made safe to
//! print on an operator's terminal or in a line-based log.
//!
//! A repository can name a file `ESC]0;...BEL ESC[2J ... CR.yaml`; printed raw, that name retitles the terminal,
//! clears it, or overwrites and forges lines, in `outpost status`, in `outpost sync`'s report and in the log.
//! Every human-facing output passes such text through [`printable`]. JSON output needs none: its encoder escapes
//! control characters already.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character (C0, DEL, C1) and every bidirectional-override mark written as a visible
/// escape (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`); unchanged (and not copied) when there is none.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    // The bidi controls reorder what follows them on screen ("Trojan Source"), so a name can look like another.
    c.is_control()
        || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_bytes_become_visible_escapes() {
        assert_eq!(
            printable("\u{1b}]0;owned\u{7}\u{1b}[2J a\r\nb\tc\u{7f}\u{9b}"),
            "\\x1b]0;owned\\x07\\x1b[2J a\\r\\nb\\tc\\x7f\\u{9b}"
        );
        assert_eq!(printable("abc\u{202e}fdp.yaml"), "abc\\u{202e}fdp.yaml");
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let text = "deploy/app.yaml: line 3 — déjà vu";
        assert!(matches!(printable(text), std::borrow::Cow::Borrowed(t) if t == text));
    }
}
