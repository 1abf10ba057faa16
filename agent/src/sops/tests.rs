//! Known-answer files written by the real `sops` (Flux's and SOPS's published test data, see testdata/README.md).

use serde_json::json;

use super::*;

pub(super) const FLUX_KEY: &str = include_str!("testdata/flux/keys-age.txt");
pub(super) const FLUX_GLOBAL_KEY: &str = include_str!("testdata/flux/keys-age-global.txt");
pub(super) const FLUX_RECIPIENT: &str =
    "age1l44xcng8dqj32nlv6d930qvvrny05hglzcv9qpc7kxjc6902ma4qufys29";
pub(super) const AGE_YAML: &str = include_str!("testdata/flux/algorithms-age.yaml");

pub(super) fn ids(text: &str) -> Identities {
    Identities::from_text(text, "/etc/outpost/age.key").unwrap()
}

pub(super) fn docs(plain: Plain) -> Vec<serde_json::Value> {
    match plain {
        Plain::Documents(d) => d,
        other => panic!("not documents: {other:?}"),
    }
}

#[test]
fn flux_yaml_secret_decrypts_to_published_plaintext() {
    let out = docs(decrypt_document("age.yaml", AGE_YAML, Format::Yaml, &ids(FLUX_KEY)).unwrap());
    assert_eq!(
        out,
        [
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "age"}, "stringData": {"key": "value"}})
        ]
    );
    let global = include_str!("testdata/flux/global-secret.yaml");
    let out =
        docs(decrypt_document("global.yaml", global, Format::Yaml, &ids(FLUX_GLOBAL_KEY)).unwrap());
    assert_eq!(out[0]["stringData"]["key"], "global-value");
    assert_eq!(out[0]["type"], "Opaque");
    for (file, key, want) in [
        (
            include_str!("testdata/flux/patches-merge1.yaml"),
            "key",
            "merge1",
        ),
        (
            include_str!("testdata/flux/patches-merge2.yaml"),
            "merge2",
            "merge2",
        ),
    ] {
        let out = docs(decrypt_document("merge.yaml", file, Format::Yaml, &ids(FLUX_KEY)).unwrap());
        assert_eq!(out[0]["stringData"][key], want);
    }
}

#[test]
fn flux_dotenv_and_binary_generator_inputs_decrypt() {
    for file in [
        include_str!("testdata/flux/envs-env.env"),
        include_str!("testdata/flux/component-env.env"),
    ] {
        assert_eq!(
            decrypt_document("env.env", file, Format::Dotenv, &ids(FLUX_KEY)).unwrap(),
            Plain::Dotenv("key=value\n".into())
        );
    }
    let binary = include_str!("testdata/flux/files-file.txt");
    assert_eq!(Format::for_path("files/file.txt"), Format::Binary);
    assert_eq!(
        decrypt_document("file.txt", binary, Format::Binary, &ids(FLUX_KEY)).unwrap(),
        Plain::Binary(b"value".to_vec())
    );
}

#[test]
fn sops_age_keysource_vector() {
    let text = include_str!("testdata/sops/age-keysource-vector.txt");
    let armor = &text[text.find("-----BEGIN").unwrap()..];
    let mine = ids(text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap());
    assert_eq!(
        mine.recipients(),
        ["age1lzd99uklcjnc0e7d860axevet2cz99ce9pq6tzuzd05l5nr28ams36nvun"]
    );
    assert_eq!(mine.open_raw(armor).unwrap(), b"data");
    let other = ids("AGE-SECRET-KEY-1432K5YRNSC44GC4986NXMX6GVZ52WTMT9C79CLUVWYY4DKDHD5JSNDP4MC");
    assert!(other.open_raw(armor).is_none());
}

#[test]
fn wrong_identity_names_the_file_recipients_and_ours() {
    let global = include_str!("testdata/flux/global-secret.yaml");
    let err =
        decrypt_document("apps/global.yaml", global, Format::Yaml, &ids(FLUX_KEY)).unwrap_err();
    assert!(
        matches!(err, SopsError::NoMatchingIdentity { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.starts_with("apps/global.yaml: "), "{text}");
    assert!(
        text.contains("age1henwn645drkd3fa34t27t2w2x0nsgw3w4h62gmg5x5xflyjpy38s5cncph"),
        "{text}"
    );
    assert!(text.contains(FLUX_RECIPIENT), "{text}");
    assert!(text.contains("/etc/outpost/age.key"), "{text}");
    assert!(text.contains("sops updatekeys"), "{text}");
    // A post-quantum recipient is one no X25519 identity opens: the same error, naming it.
    let pq = include_str!("testdata/flux/algorithms-age-pq.yaml");
    let err = decrypt_document("pq.yaml", pq, Format::Yaml, &ids(FLUX_KEY)).unwrap_err();
    assert!(err.to_string().contains("age1pq1"), "{err}");
}

#[test]
fn tampering_is_a_mac_mismatch() {
    let key = ids(FLUX_KEY);
    // An unencrypted value is covered by the MAC too.
    let renamed = AGE_YAML.replace("name: age\n", "name: agf\n");
    let err = decrypt_document("age.yaml", &renamed, Format::Yaml, &key).unwrap_err();
    assert!(matches!(err, SopsError::MacMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("age.yaml: MAC mismatch"), "{err}");
    // Moving keys changes the order the MAC hashes.
    let moved = AGE_YAML.replace("kind: Secret\n", "").replace(
        "apiVersion: v1\n",
        "apiVersion: v1\nkind: Secret\nextra: 1\n",
    );
    assert!(matches!(
        decrypt_document("age.yaml", &moved, Format::Yaml, &key),
        Err(SopsError::MacMismatch { .. })
    ));
    let later = AGE_YAML.replace("2024-11-12T13:33:42Z", "2024-11-12T13:33:43Z");
    assert!(matches!(
        decrypt_document("age.yaml", &later, Format::Yaml, &key),
        Err(SopsError::MacMismatch { .. })
    ));
    // An encrypted value moved to another key no longer opens: its path is its additional data.
    let moved_value = AGE_YAML.replace("  key: ENC", "  other: ENC");
    let err = decrypt_document("age.yaml", &moved_value, Format::Yaml, &key).unwrap_err();
    assert!(
        matches!(err, SopsError::Value { ref path, .. } if path == "stringData.other"),
        "{err:?}"
    );
    assert!(err.to_string().contains("stringData.other"), "{err}");
}

#[test]
fn not_sops_and_malformed_files() {
    let key = ids(FLUX_KEY);
    let plain = "apiVersion: v1\nkind: ConfigMap\n";
    assert!(!is_sops(plain, Format::Yaml));
    assert!(is_sops(AGE_YAML, Format::Yaml));
    assert!(is_sops(
        include_str!("testdata/flux/envs-env.env"),
        Format::Dotenv
    ));
    assert!(is_sops(
        include_str!("testdata/flux/files-file.txt"),
        Format::Binary
    ));
    assert!(!is_sops("a: sops\n", Format::Yaml));
    assert!(matches!(
        decrypt_document("cm.yaml", plain, Format::Yaml, &key),
        Err(SopsError::NotSops { .. })
    ));
    let err = decrypt_document("bad.yaml", "a: [\n", Format::Yaml, &key).unwrap_err();
    assert!(matches!(err, SopsError::Malformed { .. }), "{err:?}");
    let no_age = AGE_YAML
        .replace("  age:\n    - recipient", "  pgp:\n    - recipient")
        .replace("  pgp: []\n", "");
    let err = decrypt_document("pgp.yaml", &no_age, Format::Yaml, &key).unwrap_err();
    assert!(
        matches!(err, SopsError::NoAgeRecipient { ref kinds, .. } if kinds == "pgp"),
        "{err:?}"
    );
    let err = decrypt_document("x.env", "novalue\nsops_mac=x\n", Format::Dotenv, &key).unwrap_err();
    assert!(err.to_string().contains("line 1 has no `=`"), "{err}");
}
