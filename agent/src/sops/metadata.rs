//! The `sops` metadata block: which keys wrap the data key, which values are encrypted, and the MAC.
//!
//! YAML and JSON files keep it as a `sops` mapping in the (first) document; dotenv files flatten it into
//! `sops_`-prefixed keys (`sops_age__list_0__map_recipient`), which [`unflatten`] turns back into the same tree.
//! Only the fields decryption needs are read; key kinds other than age are only named in errors.

use regex::Regex;

use super::tree::Node;
use super::Problem;

/// The suffix SOPS leaves in plain text when a file names no selection rule (`sops.DefaultUnencryptedSuffix`).
const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";
/// Master key kinds SOPS knows besides age, as they appear in the metadata.
const OTHER_KEY_KINDS: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

/// Which values of the tree are encrypted (SOPS allows one rule per file).
#[derive(Debug)]
pub(crate) enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(Regex),
    EncryptedRegex(Regex),
    /// `encrypted_comment_regex` / `unencrypted_comment_regex`: the choice follows comments, which the parsed
    /// tree does not keep, so a value counts as encrypted when it has the `ENC[...]` form.
    ByComment,
}

impl Rule {
    /// SOPS's `shouldBeEncrypted` for a value at `path` (the mapping keys from the root; list positions are not
    /// part of it). `value_looks_encrypted` only matters for [`Rule::ByComment`].
    pub(crate) fn encrypted(&self, path: &[&str], value_looks_encrypted: bool) -> bool {
        match self {
            Rule::UnencryptedSuffix(s) => !path.iter().any(|k| k.ends_with(s.as_str())),
            Rule::EncryptedSuffix(s) => path.iter().any(|k| k.ends_with(s.as_str())),
            Rule::UnencryptedRegex(r) => !path.iter().any(|k| r.is_match(k)),
            Rule::EncryptedRegex(r) => path.iter().any(|k| r.is_match(k)),
            Rule::ByComment => value_looks_encrypted,
        }
    }
}

/// One age recipient's copy of the data key.
#[derive(Debug, Clone)]
pub(crate) struct AgeStanza {
    pub recipient: String,
    /// An armored age file whose payload is the 32-byte data key.
    pub enc: String,
}

#[derive(Debug)]
pub(crate) struct Metadata {
    /// `lastmodified` as Go re-formats it (RFC 3339, whole seconds): the MAC's additional data.
    pub last_modified: String,
    pub mac: String,
    pub rule: Rule,
    pub mac_only_encrypted: bool,
    pub age: Vec<AgeStanza>,
    /// Other key kinds the file is encrypted for (named when no age identity fits).
    pub other_kinds: Vec<&'static str>,
}

/// Reads the metadata mapping; `Err` says which field is wrong.
pub(crate) fn parse(meta: &Node) -> Result<Metadata, Problem> {
    let Node::Map(_) = meta else {
        return Err("the sops entry is not a mapping".into());
    };
    let text = |key: &str| -> Result<Option<String>, Problem> {
        match meta.get(key) {
            None | Some(Node::Null) => Ok(None),
            Some(Node::Str(s)) if s.is_empty() => Ok(None),
            Some(Node::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Problem(format!("sops.{key} is not a string"))),
        }
    };
    let last_modified = text("lastmodified")?.ok_or("sops.lastmodified is missing")?;
    let last_modified = go_rfc3339(&last_modified)
        .ok_or_else(|| format!("sops.lastmodified {last_modified:?} is not an RFC 3339 time"))?;
    let mac = text("mac")?.ok_or("sops.mac is missing (a file without a MAC is not accepted)")?;

    let regex = |key: &str, value: String| {
        Regex::new(&value).map_err(|e| format!("sops.{key} {value:?} is not a valid regex: {e}"))
    };
    let mut rules = Vec::new();
    for key in [
        "unencrypted_suffix",
        "encrypted_suffix",
        "unencrypted_regex",
        "encrypted_regex",
        "unencrypted_comment_regex",
        "encrypted_comment_regex",
    ] {
        if let Some(value) = text(key)? {
            rules.push(match key {
                "unencrypted_suffix" => Rule::UnencryptedSuffix(value),
                "encrypted_suffix" => Rule::EncryptedSuffix(value),
                "unencrypted_regex" => Rule::UnencryptedRegex(regex(key, value)?),
                "encrypted_regex" => Rule::EncryptedRegex(regex(key, value)?),
                _ => Rule::ByComment,
            });
        }
    }
    if rules.len() > 1 {
        return Err("more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, unencrypted_comment_regex is set".into());
    }
    let rule = rules
        .pop()
        .unwrap_or_else(|| Rule::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.into()));

    let mac_only_encrypted = match meta.get("mac_only_encrypted") {
        None | Some(Node::Null) | Some(Node::Bool(false)) => false,
        Some(Node::Bool(true)) => true,
        // dotenv files carry every metadata value as a string.
        Some(Node::Str(s)) if s == "true" => true,
        Some(Node::Str(s)) if s == "false" || s.is_empty() => false,
        Some(_) => return Err("sops.mac_only_encrypted is not a boolean".into()),
    };

    // With key groups the data key may be split between them (Shamir); one group holds all of it.
    let groups: Vec<&Node> = match meta.get("key_groups") {
        None | Some(Node::Null) => vec![meta],
        Some(Node::Seq(groups)) if groups.is_empty() => vec![meta],
        Some(Node::Seq(groups)) if groups.len() == 1 => vec![&groups[0]],
        Some(Node::Seq(_)) => {
            return Err("the data key is split across several key_groups (Shamir secret sharing), which Outpost does not support; re-encrypt the file with a single key group".into())
        }
        Some(_) => return Err("sops.key_groups is not a list".into()),
    };
    let mut age = Vec::new();
    let mut other_kinds = Vec::new();
    for group in groups {
        match group.get("age") {
            None | Some(Node::Null) => {}
            Some(Node::Seq(entries)) => {
                for entry in entries {
                    let field = |name: &str| match entry.get(name) {
                        Some(Node::Str(s)) => Ok(s.clone()),
                        _ => Err(Problem(format!("an entry of sops.age has no {name}"))),
                    };
                    age.push(AgeStanza {
                        recipient: field("recipient")?,
                        enc: field("enc")?,
                    });
                }
            }
            Some(_) => return Err("sops.age is not a list".into()),
        }
        for kind in OTHER_KEY_KINDS {
            if matches!(group.get(kind), Some(Node::Seq(v)) if !v.is_empty()) {
                other_kinds.push(kind);
            }
        }
    }
    Ok(Metadata {
        last_modified,
        mac,
        rule,
        mac_only_encrypted,
        age,
        other_kinds,
    })
}

/// SOPS authenticates the MAC with `lastmodified` after Go parsed and re-printed it as RFC 3339: fractional
/// seconds dropped, a zero offset written `Z`. `None` when the text is not RFC 3339.
pub(crate) fn go_rfc3339(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac.find(|c: char| !c.is_ascii_digit())?;
        if end == 0 {
            return None;
        }
        rest = &frac[end..];
    }
    let zone = match rest {
        "Z" | "+00:00" | "-00:00" => "Z".to_string(),
        z if z.len() == 6
            && (z.starts_with('+') || z.starts_with('-'))
            && z.as_bytes()[3] == b':'
            && z[1..3]
                .bytes()
                .chain(z[4..6].bytes())
                .all(|c| c.is_ascii_digit()) =>
        {
            z.to_string()
        }
        _ => return None,
    };
    Some(format!("{}{zone}", &text[..19]))
}

/// Rebuilds the metadata tree from dotenv's flattened `sops_` keys (prefix already removed): `a__map_b` is key
/// `b` inside `a`, `a__list_0` is the first item of list `a`.
pub(crate) fn unflatten(entries: Vec<(String, String)>) -> Result<Node, Problem> {
    let mut root = Node::Map(Vec::new());
    for (key, value) in entries {
        let mut node = &mut root;
        let mut tokens = tokenize(&key).into_iter().peekable();
        while let Some(token) = tokens.next() {
            let last = tokens.peek().is_none();
            let next_is_index = matches!(tokens.peek(), Some(Token::Index(_)));
            let fresh = || {
                if last {
                    Node::Str(value.clone())
                } else if next_is_index {
                    Node::Seq(Vec::new())
                } else {
                    Node::Map(Vec::new())
                }
            };
            node = match (node, token) {
                (Node::Map(entries), Token::Key(k)) => {
                    let at = match entries.iter().position(|(name, _)| *name == k) {
                        Some(at) if !last => at,
                        Some(_) => return Err(Problem(format!("sops_{key} is given twice"))),
                        None => {
                            entries.push((k, fresh()));
                            entries.len() - 1
                        }
                    };
                    &mut entries[at].1
                }
                (Node::Seq(items), Token::Index(i)) if i < 1024 => {
                    while items.len() <= i {
                        items.push(Node::Null);
                    }
                    if matches!(items[i], Node::Null) {
                        items[i] = fresh();
                    } else if last {
                        return Err(Problem(format!("sops_{key} is given twice")));
                    }
                    &mut items[i]
                }
                _ => {
                    return Err(Problem(format!(
                        "sops_{key} does not fit the other sops_ keys"
                    )))
                }
            };
        }
    }
    Ok(root)
}

enum Token {
    Key(String),
    Index(usize),
}

fn tokenize(key: &str) -> Vec<Token> {
    const MAP: &str = "__map_";
    const LIST: &str = "__list_";
    let mut tokens = Vec::new();
    let mut rest = key;
    let mut is_index = false;
    loop {
        let next = [
            rest.find(MAP).map(|i| (i, MAP)),
            rest.find(LIST).map(|i| (i, LIST)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(i, _)| *i);
        let (part, after) = match next {
            Some((i, sep)) => (&rest[..i], Some((&rest[i + sep.len()..], sep == LIST))),
            None => (rest, None),
        };
        tokens.push(if is_index {
            // A bad index becomes one no list reaches, so it is reported as not fitting.
            Token::Index(part.parse().unwrap_or(usize::MAX))
        } else {
            Token::Key(part.to_string())
        });
        match after {
            Some((r, list)) => {
                rest = r;
                is_index = list;
            }
            None => return tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lastmodified_is_reprinted_as_go_does() {
        assert_eq!(
            go_rfc3339("2024-11-12T13:33:42Z").unwrap(),
            "2024-11-12T13:33:42Z"
        );
        assert_eq!(
            go_rfc3339("2024-11-12T13:33:42.123456Z").unwrap(),
            "2024-11-12T13:33:42Z"
        );
        assert_eq!(
            go_rfc3339("2024-11-12T13:33:42+00:00").unwrap(),
            "2024-11-12T13:33:42Z"
        );
        assert_eq!(
            go_rfc3339("2024-11-12T13:33:42+02:00").unwrap(),
            "2024-11-12T13:33:42+02:00"
        );
        assert!(go_rfc3339("2024-11-12 13:33:42Z").is_none());
        assert!(go_rfc3339("yesterday").is_none());
    }

    #[test]
    fn rules_follow_sops() {
        let path = ["stringData", "password"];
        assert!(Rule::UnencryptedSuffix("_unencrypted".into()).encrypted(&path, false));
        assert!(!Rule::UnencryptedSuffix("word".into()).encrypted(&path, false));
        assert!(Rule::EncryptedSuffix("word".into()).encrypted(&path, false));
        assert!(!Rule::EncryptedSuffix("_enc".into()).encrypted(&path, false));
        let data = Regex::new("^(data|stringData)$").unwrap();
        assert!(Rule::EncryptedRegex(data.clone()).encrypted(&path, false));
        assert!(!Rule::EncryptedRegex(data.clone()).encrypted(&["metadata", "name"], false));
        assert!(!Rule::UnencryptedRegex(data).encrypted(&path, false));
        assert!(Rule::ByComment.encrypted(&path, true));
        assert!(!Rule::ByComment.encrypted(&path, false));
    }

    #[test]
    fn flattened_metadata_unflattens() {
        let tree = unflatten(vec![
            ("age__list_0__map_recipient".into(), "age1a".into()),
            ("age__list_0__map_enc".into(), "E0".into()),
            ("age__list_1__map_recipient".into(), "age1b".into()),
            ("age__list_1__map_enc".into(), "E1".into()),
            ("mac".into(), "M".into()),
        ])
        .unwrap();
        let Some(Node::Seq(age)) = tree.get("age") else {
            panic!("{tree:?}")
        };
        assert_eq!(age.len(), 2);
        assert_eq!(age[1].get("recipient"), Some(&Node::Str("age1b".into())));
        assert_eq!(tree.get("mac"), Some(&Node::Str("M".into())));
        let err =
            unflatten(vec![("mac".into(), "a".into()), ("mac".into(), "b".into())]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        let err = unflatten(vec![
            ("age__list_x".into(), "a".into()),
            ("age__list_0".into(), "b".into()),
        ])
        .unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
    }

    #[test]
    fn metadata_errors_name_the_field() {
        let meta = |yaml: &str| parse(&super::super::tree::parse_yaml(yaml).unwrap()[0]);
        let err = meta("mac: x\n").unwrap_err();
        assert!(err.contains("lastmodified is missing"), "{err}");
        let err = meta("lastmodified: '2024-01-01T00:00:00Z'\n").unwrap_err();
        assert!(err.contains("sops.mac is missing"), "{err}");
        let err = meta("lastmodified: '2024-01-01T00:00:00Z'\nmac: x\nencrypted_regex: a\nunencrypted_suffix: b\n")
            .unwrap_err();
        assert!(err.contains("more than one of"), "{err}");
        let err = meta("lastmodified: '2024-01-01T00:00:00Z'\nmac: x\nencrypted_regex: '('\n")
            .unwrap_err();
        assert!(err.contains("not a valid regex"), "{err}");
        let err = meta(
            "lastmodified: '2024-01-01T00:00:00Z'\nmac: x\nkey_groups: [{age: []}, {age: []}]\n",
        )
        .unwrap_err();
        assert!(err.contains("Shamir"), "{err}");
        let ok = meta("lastmodified: '2024-01-01T00:00:00Z'\nmac: x\npgp: [{fp: F}]\nage: []\n")
            .unwrap();
        assert_eq!(ok.other_kinds, ["pgp"]);
        assert!(matches!(ok.rule, Rule::UnencryptedSuffix(ref s) if s == "_unencrypted"));
    }
}
