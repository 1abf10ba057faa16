//! YAML 1.1 octal integers, read the way kubectl and kustomize read them.
//!
//! Manifests are full of `defaultMode: 0644`. Go's YAML libraries (and so kubectl and kustomize) read a plain
//! `0644` as the octal integer 420; serde_yaml_ng follows YAML 1.2 and keeps it a string, which the API server
//! rejects. Before parsing, plain block-style values that are a `0` followed by octal digits are rewritten to
//! their decimal value. Quoted values, block scalars (`|`, `>`) and comments are left alone; flow-style
//! mappings (`{mode: 0644}`) are not rewritten.

use std::borrow::Cow;
use std::sync::OnceLock;

fn value_line() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r#"^(\s*(?:-\s+)*(?:[^\s#'"\-][^#]*?:|"[^"]*":|'[^']*':|-)\s+)0([0-7]+)(\s*(?:#.*)?)$"#,
        )
        .expect("a valid pattern")
    })
}

fn block_opener() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"(?:^|:\s|-\s)[|>][-+0-9]*\s*(?:#.*)?$").expect("a valid pattern")
    })
}

/// The text with YAML 1.1 octal values written in decimal; borrowed when there is nothing to change.
pub fn rewrite(text: &str) -> Cow<'_, str> {
    if !text.contains(" 0") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    // Indentation of the line that opened the block scalar we are in.
    let mut block: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let indent = content.len() - content.trim_start_matches(' ').len();
        if let Some(opened) = block {
            if content.trim().is_empty() || indent > opened {
                out.push_str(line);
                continue;
            }
            block = None;
        }
        if block_opener().is_match(content) {
            block = Some(indent);
            out.push_str(line);
            continue;
        }
        match value_line().captures(content) {
            Some(c) => match i64::from_str_radix(&c[2], 8) {
                Ok(value) => {
                    changed = true;
                    out.push_str(&c[1]);
                    out.push_str(&value.to_string());
                    out.push_str(&c[3]);
                    out.push_str(&line[content.len()..]);
                }
                Err(_) => out.push_str(line),
            },
            None => out.push_str(line),
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn plain_octals_become_decimal_and_nothing_else_changes() {
        let text = "spec:\n  defaultMode: 0440 # r--r-----\n  items:\n  - mode: 0600\n  - 0644\n  quoted: \"0440\"\n  single: '0755'\n  zero: 0\n  decimal: 0440x\n  nine: 0449\n  script: |\n    mode: 0644\n    - 0700\n  after: 0700\n";
        let want = "spec:\n  defaultMode: 288 # r--r-----\n  items:\n  - mode: 384\n  - 420\n  quoted: \"0440\"\n  single: '0755'\n  zero: 0\n  decimal: 0440x\n  nine: 0449\n  script: |\n    mode: 0644\n    - 0700\n  after: 448\n";
        assert_eq!(rewrite(text), want);
        assert!(matches!(rewrite("a: 1\n"), std::borrow::Cow::Borrowed(_)));
    }
}
