//! Files this test seals itself, for the cases the known-answer files do not cover (selection rules, types,
//! tampering, identities made by the `age` tool). The sealing helper is trusted only because the same
//! decryption passes the known-answer files (tests.rs).

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::cipher::{self, DataKey};
use super::tests::{docs, ids, AGE_YAML, FLUX_GLOBAL_KEY, FLUX_KEY, FLUX_RECIPIENT};
use super::tree::{self, Node};
use super::*;

/// A fresh data key and its stanza for `recipient`.
fn new_data_key(recipient: &str) -> (DataKey, Node) {
    let bytes: [u8; 32] = rand::random();
    let recipient_key: age::x25519::Recipient = recipient.parse().unwrap();
    let enc = age::encrypt_and_armor(&recipient_key, &bytes).unwrap();
    (DataKey::new(&bytes).unwrap(), stanza(recipient, &enc))
}

fn stanza(recipient: &str, enc: &str) -> Node {
    Node::Map(vec![
        ("recipient".into(), Node::Str(recipient.into())),
        ("enc".into(), Node::Str(enc.into())),
    ])
}

/// Encrypts `docs` as SOPS does with the selection `rule` (a metadata key and value), returning the documents
/// with their `sops` entry.
fn seal(
    mut docs: Vec<Node>,
    rule: Option<(&str, &str)>,
    mac_only: bool,
    key: &DataKey,
    stanzas: Vec<Node>,
) -> Vec<Node> {
    const LAST_MODIFIED: &str = "2026-03-01T10:00:00Z";
    let mut meta = vec![
        ("age".to_string(), Node::Seq(stanzas)),
        ("lastmodified".to_string(), Node::Str(LAST_MODIFIED.into())),
    ];
    if let Some((k, v)) = rule {
        meta.push((k.into(), Node::Str(v.into())));
    }
    if mac_only {
        meta.push(("mac_only_encrypted".into(), Node::Bool(true)));
    }
    meta.push(("version".into(), Node::Str("3.9.0".into())));
    let mut probe = meta.clone();
    probe.push(("mac".into(), Node::Str("x".into())));
    let parsed = metadata::parse(&Node::Map(probe)).unwrap();
    let mut hash = ring::digest::Context::new(&ring::digest::SHA512);
    if mac_only {
        hash.update(&MAC_ONLY_ENCRYPTED_INIT);
    }
    fn walk(
        node: &mut Node,
        path: &mut Vec<String>,
        rule: &metadata::Rule,
        mac_only: bool,
        key: &DataKey,
        hash: &mut ring::digest::Context,
    ) {
        match node {
            Node::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    path.push(k.clone());
                    walk(v, path, rule, mac_only, key, hash);
                    path.pop();
                }
            }
            Node::Seq(items) => items
                .iter_mut()
                .for_each(|i| walk(i, path, rule, mac_only, key, hash)),
            Node::Null => {}
            leaf => {
                let keys: Vec<&str> = path.iter().map(String::as_str).collect();
                let encrypted = rule.encrypted(&keys, false);
                let bytes = leaf.mac_bytes().unwrap();
                if !mac_only || encrypted {
                    hash.update(&bytes);
                }
                if encrypted && bytes != b"" {
                    let kind = match leaf {
                        Node::Int(_) => "int",
                        Node::Float(_) => "float",
                        Node::Bool(_) => "bool",
                        _ => "str",
                    };
                    *leaf = Node::Str(cipher::encrypt(
                        &bytes,
                        kind,
                        key,
                        &format!("{}:", keys.join(":")),
                    ));
                }
            }
        }
    }
    for doc in docs.iter_mut() {
        walk(doc, &mut Vec::new(), &parsed.rule, mac_only, key, &mut hash);
    }
    let mac = hex_upper(hash.finish().as_ref());
    meta.push((
        "mac".into(),
        Node::Str(cipher::encrypt(mac.as_bytes(), "str", key, LAST_MODIFIED)),
    ));
    for doc in docs.iter_mut() {
        if let Node::Map(entries) = doc {
            entries.push(("sops".into(), Node::Map(meta.clone())));
        }
    }
    docs
}

fn to_yaml(docs: &[Node]) -> String {
    fn conv(n: &Node) -> serde_yaml_ng::Value {
        match n {
            Node::Null => serde_yaml_ng::Value::Null,
            Node::Bool(b) => (*b).into(),
            Node::Int(i) => (*i).into(),
            Node::Float(f) => (*f).into(),
            Node::Str(s) => s.clone().into(),
            Node::Seq(items) => serde_yaml_ng::Value::Sequence(items.iter().map(conv).collect()),
            Node::Map(entries) => serde_yaml_ng::Value::Mapping(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone().into(), conv(v)))
                    .collect(),
            ),
        }
    }
    docs.iter()
        .map(|d| serde_yaml_ng::to_string(&conv(d)).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn plain_yaml(text: &str) -> Vec<Node> {
    tree::parse_yaml(text).unwrap()
}

const SAMPLE: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  labels_unencrypted: {tier: x}\nstringData:\n  password: s3cr3t-plain\n  port: 5432\n  ratio: 0.25\n  enabled: true\n  empty: ''\n  hosts: [a, b]\n  nothing: null\n";

#[test]
fn selection_rules_decide_what_is_encrypted_and_all_decrypt() {
    let ours = ids(FLUX_KEY);
    for (rule, in_clear) in [
        (None, vec!["tier: x"]),
        (
            Some(("encrypted_regex", "^(data|stringData)$")),
            vec!["name: db", "kind: Secret"],
        ),
        (
            Some(("unencrypted_regex", "^(apiVersion|kind|metadata)$")),
            vec!["name: db", "kind: Secret"],
        ),
        (Some(("encrypted_suffix", "Data")), vec!["name: db"]),
        (
            Some(("unencrypted_suffix", "Version")),
            vec!["apiVersion: v1"],
        ),
    ] {
        for mac_only in [false, true] {
            let (key, st) = new_data_key(FLUX_RECIPIENT);
            let text = to_yaml(&seal(plain_yaml(SAMPLE), rule, mac_only, &key, vec![st]));
            assert!(!text.contains("s3cr3t-plain"), "{rule:?}: {text}");
            for clear in &in_clear {
                assert!(
                    text.contains(clear),
                    "{rule:?}: {clear} should stay in clear: {text}"
                );
            }
            let out = docs(decrypt_document("s.yaml", &text, Format::Yaml, &ours).unwrap());
            let want: serde_json::Value = serde_yaml_ng::from_str(SAMPLE).unwrap();
            assert_eq!(out, [want], "{rule:?} mac_only={mac_only}");
        }
    }
}

#[test]
fn mac_only_encrypted_ignores_clear_values_but_not_secret_ones() {
    let ours = ids(FLUX_KEY);
    let rule = Some(("encrypted_regex", "^stringData$"));
    let (key, st) = new_data_key(FLUX_RECIPIENT);
    let text = to_yaml(&seal(
        plain_yaml(SAMPLE),
        rule,
        true,
        &key,
        vec![st.clone()],
    ));
    // With mac_only_encrypted, clear values may change without breaking the MAC (that is its purpose)...
    let renamed = text.replace("name: db", "name: db2");
    assert!(decrypt_document("s.yaml", &renamed, Format::Yaml, &ours).is_ok());
    // ...but without it they may not.
    let full = to_yaml(&seal(plain_yaml(SAMPLE), rule, false, &key, vec![st]));
    let renamed = full.replace("name: db", "name: db2");
    assert!(matches!(
        decrypt_document("s.yaml", &renamed, Format::Yaml, &ours),
        Err(SopsError::MacMismatch { .. })
    ));
    // Dropping an encrypted value changes the MAC either way.
    let dropped: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("port:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(matches!(
        decrypt_document("s.yaml", &dropped, Format::Yaml, &ours),
        Err(SopsError::MacMismatch { .. })
    ));
}

#[test]
fn multi_document_yaml_and_json() {
    let ours = ids(FLUX_KEY);
    let (key, st) = new_data_key(FLUX_RECIPIENT);
    let sealed = seal(
        plain_yaml("a: one\n---\nb: two\n"),
        None,
        false,
        &key,
        vec![st.clone()],
    );
    let out = docs(decrypt_document("m.yaml", &to_yaml(&sealed), Format::Yaml, &ours).unwrap());
    assert_eq!(out, [json!({"a": "one"}), json!({"b": "two"})]);
    // The same tree as JSON (SOPS's JSON store), keys not in sorted order.
    let sealed = seal(
        plain_yaml("z: 1\na: [x, {k: 2.5}]\n"),
        None,
        false,
        &key,
        vec![st],
    );
    let json_text = serde_json::to_string(
        &serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&to_yaml(&sealed)).unwrap(),
    )
    .unwrap();
    assert!(json_text.starts_with("{\"z\""), "{json_text}");
    let out = docs(decrypt_document("m.json", &json_text, Format::Json, &ours).unwrap());
    assert_eq!(out, [json!({"z": 1, "a": ["x", {"k": 2.5}]})]);
}

#[test]
fn errors_carry_no_plaintext_or_key_material() {
    let ours = ids(FLUX_KEY);
    let (key, st) = new_data_key(FLUX_RECIPIENT);
    let text = to_yaml(&seal(plain_yaml(SAMPLE), None, false, &key, vec![st]));
    let broken = [
        text.replace("name: ENC", "name: ENCX"),
        text.replace("kind: ENC", "other: ENC"),
        text.replace("2026-03-01T10:00:00Z", "2026-03-01T10:00:01Z"),
    ];
    for b in broken {
        let err = decrypt_document("s.yaml", &b, Format::Yaml, &ours).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("AGE-SECRET-KEY"), "{shown}");
    }
    assert!(!format!("{ours:?}").contains("AGE-SECRET-KEY"));
}

// ---- the identities file -------------------------------------------------------------------------------------

fn write(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn identities_file_is_checked_like_the_agent_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "age.key", FLUX_KEY, 0o600);
    assert_eq!(
        Identities::load(&good).unwrap().recipients(),
        [FLUX_RECIPIENT]
    );
    let open = write(dir.path(), "open.key", FLUX_KEY, 0o644);
    let err = Identities::load(&open).unwrap_err();
    assert!(
        matches!(err, IdentityError::Permissions { mode: 0o644, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains(&format!("chmod 600 {}", open.display())),
        "{err}"
    );
    let empty = write(dir.path(), "empty.key", "# created: now\n\n", 0o600);
    let err = Identities::load(&empty).unwrap_err();
    assert!(err.to_string().contains("age-keygen -o"), "{err}");
    let bad = write(
        dir.path(),
        "bad.key",
        "# c\nAGE-SECRET-KEY-1NOTAKEYATALLXXXXXXXXXXXXXXX\n",
        0o600,
    );
    let err = Identities::load(&bad).unwrap_err();
    assert!(
        matches!(err, IdentityError::Line { line: 2, .. }),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("NOTAKEY"),
        "the line is not echoed: {err}"
    );
    let err = Identities::load(dir.path()).unwrap_err();
    assert!(matches!(err, IdentityError::NotAFile { .. }), "{err:?}");
    let err = Identities::load(&dir.path().join("missing.key")).unwrap_err();
    assert!(
        err.to_string()
            .contains("could not open age identities file"),
        "{err}"
    );
    // Several identities: any of them may fit.
    let both = format!("{FLUX_GLOBAL_KEY}\n{FLUX_KEY}");
    let both = Identities::load(&write(dir.path(), "both.key", &both, 0o400)).unwrap();
    assert!(decrypt_document("age.yaml", AGE_YAML, Format::Yaml, &both).is_ok());
}

/// The Debian `age` tools make the identity and wrap the data key; this code only seals the values.
#[test]
fn identity_from_age_keygen_opens_a_data_key_wrapped_by_the_age_tool() {
    for tool in ["age", "age-keygen"] {
        assert!(
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok(),
            "{tool} is not installed: apt-get install age"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("age.key");
    let made = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    // age-keygen writes 0600 itself; the loader would refuse anything looser.
    let ids = Identities::load(&key_file).unwrap();
    let public = std::process::Command::new("age-keygen")
        .arg("-y")
        .arg(&key_file)
        .output()
        .unwrap();
    let recipient = String::from_utf8(public.stdout).unwrap().trim().to_string();
    assert_eq!(ids.recipients(), std::slice::from_ref(&recipient));

    let data_key: [u8; 32] = rand::random();
    let key_path = dir.path().join("data.key");
    std::fs::write(&key_path, data_key).unwrap();
    let wrapped = std::process::Command::new("age")
        .args(["--encrypt", "--armor", "--recipient", &recipient])
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(wrapped.status.success(), "{wrapped:?}");
    let enc = String::from_utf8(wrapped.stdout).unwrap();
    let key = DataKey::new(&data_key).unwrap();
    let text = to_yaml(&seal(
        plain_yaml(SAMPLE),
        None,
        false,
        &key,
        vec![stanza(&recipient, &enc)],
    ));
    let out = docs(decrypt_document("s.yaml", &text, Format::Yaml, &ids).unwrap());
    assert_eq!(out[0]["stringData"]["password"], "s3cr3t-plain");
    // And the Flux identity, not this one, is refused with both named.
    let err =
        decrypt_document("s.yaml", &text, Format::Yaml, &super::tests::ids(FLUX_KEY)).unwrap_err();
    assert!(err.to_string().contains(&recipient), "{err}");
}
