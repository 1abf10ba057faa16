//! reveal -> build -> seal -> open, on SOPS files the real `sops` wrote (Flux's published test data).

use serde_json::{json, Value};

use super::*;
use crate::bundle::{self, BuildError, Bundle};
use crate::config::Limits;
use crate::revision::{KustomizationInput, ManifestFile, RepoFiles};
use crate::sops::Identities;

const FLUX_KEY: &str = include_str!("../sops/testdata/flux/keys-age.txt");
const GLOBAL_KEY: &str = include_str!("../sops/testdata/flux/keys-age-global.txt");
const AGE_YAML: &str = include_str!("../sops/testdata/flux/algorithms-age.yaml");
const GLOBAL_YAML: &str = include_str!("../sops/testdata/flux/global-secret.yaml");
const ENV: &str = include_str!("../sops/testdata/flux/envs-env.env");
/// `global-secret.yaml`'s published plaintext: distinctive enough to search for.
const GLOBAL_VALUE: &str = "global-value";

fn ids(text: &str) -> Identities {
    Identities::from_text(text, "/etc/outpost/age.key").unwrap()
}

const CONFIG_MAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n";

fn plain(files: &[(&str, &str)]) -> Manifests {
    Manifests {
        files: files
            .iter()
            .map(|(path, text)| ManifestFile {
                path: (*path).into(),
                content: text.as_bytes().to_vec(),
            })
            .collect(),
        ..Manifests::default()
    }
}

fn kustomized(files: &[(&str, &str)]) -> Manifests {
    let mut repo = RepoFiles::new(&Limits::default());
    for (path, text) in files {
        repo.insert(path, Entry::File(text.as_bytes().to_vec()));
    }
    Manifests {
        kustomization: Some(KustomizationInput {
            files: repo,
            root: "app".into(),
        }),
        ..Manifests::default()
    }
}

fn build(m: &Manifests) -> Result<Bundle, BuildError> {
    bundle::build_revision(m, None, &Limits::default())
}

/// Every string anywhere in `v`, keys included.
fn text_of(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn plain_manifests_decrypt_in_memory_and_the_stored_copy_holds_no_plaintext() {
    let key = ids(GLOBAL_KEY);
    let mut m = plain(&[
        ("app/cm.yaml", CONFIG_MAP),
        ("app/secret.yaml", GLOBAL_YAML),
    ]);
    let revealed = reveal(&mut m, Some(&key)).unwrap();
    assert_eq!(revealed, [GLOBAL_VALUE]);
    let built = build(&m).unwrap();
    let secret = &built.objects[1];
    assert_eq!(secret["stringData"]["key"], GLOBAL_VALUE);
    assert!(secret.get("sops").is_none(), "{secret}");

    let stored = seal(&built, &key, &revealed)
        .unwrap()
        .expect("a Secret is sealed");
    let text = text_of(&json!(stored.objects));
    assert!(!text.contains(GLOBAL_VALUE), "{text}");
    assert_eq!(
        stored.objects[0], built.objects[0],
        "the ConfigMap is kept as it is"
    );
    assert_eq!(
        stored.objects[1]["metadata"],
        json!({"name": "global-age-secret", "namespace": "default"})
    );
    assert_ne!(stored.digest, built.digest);

    let opened = open(stored.clone(), Some(&key)).unwrap();
    assert_eq!(opened.objects, built.objects);
    assert_eq!(opened.digest, stored.digest);
}

#[test]
fn an_object_that_quotes_a_decrypted_value_is_sealed_too() {
    let key = ids(GLOBAL_KEY);
    let quoting = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leak\ndata:\n  url: https://u:{GLOBAL_VALUE}@example.com\n"
    );
    let mut m = plain(&[("a/leak.yaml", &quoting), ("a/secret.yaml", GLOBAL_YAML)]);
    let revealed = reveal(&mut m, Some(&key)).unwrap();
    let built = build(&m).unwrap();
    let stored = seal(&built, &key, &revealed).unwrap().unwrap();
    assert!(
        stored.objects[0].get(SEALED_KEY).is_some(),
        "{}",
        stored.objects[0]
    );
    assert!(!text_of(&json!(stored.objects)).contains(GLOBAL_VALUE));
}

#[test]
fn kustomize_transforms_and_generators_see_plain_values() {
    let key = ids(FLUX_KEY);
    let kustomization = "namePrefix: site-\nresources:\n- secret.yaml\n- cm.yaml\nsecretGenerator:\n- name: env\n  envs:\n  - app.env\n";
    let mut m = kustomized(&[
        ("app/kustomization.yaml", kustomization),
        ("app/secret.yaml", AGE_YAML),
        ("app/cm.yaml", CONFIG_MAP),
        ("app/app.env", ENV),
        // Another site's secret, encrypted for a key this agent does not hold: never read, never an error.
        ("other/secret.yaml", GLOBAL_YAML),
    ]);
    let revealed = reveal(&mut m, Some(&key)).unwrap();
    let built = build(&m).unwrap();
    let by_name = |name: &str| {
        built
            .objects
            .iter()
            .find(|o| o["metadata"]["name"].as_str().unwrap().starts_with(name))
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("site-age")["stringData"]["key"], "value");
    // secretGenerator base64-encodes `key=value` from the decrypted dotenv file.
    assert_eq!(by_name("site-env-")["data"]["key"], "dmFsdWU=");
    let stored = seal(&built, &key, &revealed).unwrap().unwrap();
    let text = text_of(&json!(stored.objects));
    assert!(
        !text.contains("dmFsdWU=") && !text.contains("\"value\""),
        "{text}"
    );
    assert_eq!(open(stored, Some(&key)).unwrap().objects, built.objects);
}

#[test]
fn a_sops_file_the_build_reads_and_cannot_decrypt_fails_it_naming_the_file() {
    let key = ids(FLUX_KEY);
    let mut m = kustomized(&[
        ("app/kustomization.yaml", "resources:\n- other.yaml\n"),
        ("app/other.yaml", GLOBAL_YAML),
    ]);
    reveal(&mut m, Some(&key)).unwrap();
    let err = build(&m).unwrap_err().to_string();
    assert!(
        err.contains("app/other.yaml") && err.contains("none of the age identities"),
        "{err}"
    );

    let mut tampered = plain(&[(
        "a/s.yaml",
        &GLOBAL_YAML.replace("global-age-secret", "renamed"),
    )]);
    let err = reveal(&mut tampered, Some(&ids(GLOBAL_KEY)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a/s.yaml: MAC mismatch"), "{err}");
}

#[test]
fn a_sops_file_without_decryption_configured_is_refused() {
    let mut m = plain(&[("a/s.yaml", AGE_YAML)]);
    let err = reveal(&mut m, None).unwrap_err();
    assert!(matches!(err, SecretsError::NoDecryption { .. }), "{err:?}");
    assert!(
        err.to_string().contains("a/s.yaml") && err.to_string().contains("[source.decryption]")
    );
}

#[test]
fn a_stored_stub_opens_only_with_its_identities() {
    let key = ids(GLOBAL_KEY);
    let mut m = plain(&[("a/secret.yaml", GLOBAL_YAML)]);
    let revealed = reveal(&mut m, Some(&key)).unwrap();
    let stored = seal(&build(&m).unwrap(), &key, &revealed).unwrap().unwrap();
    let err = open(stored.clone(), Some(&ids(FLUX_KEY)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Secret default/global-age-secret")
            && err.contains("restore the identities file"),
        "{err}"
    );
    let err = open(stored.clone(), None).unwrap_err().to_string();
    assert!(err.contains("no [source.decryption] any more"), "{err}");
    // A stub swapped onto another name is refused rather than applied under the wrong name.
    let mut swapped = stored;
    swapped.objects[0]["metadata"]["name"] = json!("other");
    let err = open(swapped, Some(&key)).unwrap_err().to_string();
    assert!(err.contains("another object"), "{err}");
}

#[test]
fn render_without_show_secrets_hides_the_values() {
    let key = ids(GLOBAL_KEY);
    let mut m = plain(&[("a/cm.yaml", CONFIG_MAP), ("a/secret.yaml", GLOBAL_YAML)]);
    let revealed = reveal(&mut m, Some(&key)).unwrap();
    let mut built = build(&m).unwrap();
    let stored = seal(&built, &key, &revealed).unwrap().unwrap();
    redact(&mut built, &stored);
    assert_eq!(built.objects[0]["data"]["mode"], "fast");
    assert_eq!(
        built.objects[1]["stringData"]["key"],
        "<12 bytes, hidden: outpost render --show-secrets>"
    );
    assert_eq!(built.objects[1]["metadata"]["name"], "global-age-secret");
}
