//! A SOPS-encrypted Secret through the Kubernetes target: decrypted in memory and applied, re-applied offline
//! from the store, never written in plain to the state directory; a file for another key or with a broken MAC
//! fails the revision and the last good Secret stays.

use base64::Engine;

use super::cluster::{repo_with, Cluster};
use super::common::{files_holding, sops_testdata, write_identities};

/// `global-secret.yaml`'s published plaintext (Flux's test data), and its base64 form as a Secret's `data`.
const PLAIN: &str = "global-value";
const PLAIN_B64: &str = "Z2xvYmFsLXZhbHVl";

/// The Secret's `key`, as the API server returns it (`stringData` is written into `data`).
fn secret_value(c: &Cluster) -> Option<String> {
    let s = c.get(&format!(
        "/api/v1/namespaces/{}/secrets/global-age-secret",
        c.ns
    ))?;
    if let Some(v) = s["stringData"]["key"].as_str() {
        return Some(v.to_string());
    }
    let b64 = s["data"]["key"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Some(String::from_utf8(bytes).unwrap())
}

#[test]
fn a_sops_secret_is_applied_decrypted_reapplied_offline_and_never_stored_in_plain() {
    let c = Cluster::start("sops");
    // The file says `namespace: default`; kustomize moves it into this test's namespace, which works because the
    // file is decrypted before the build (its MAC covers the file as written).
    let kustomization = format!(
        "namespace: {}\nresources:\n- namespace.yaml\n- secret.yaml\n",
        c.ns
    );
    let repo = repo_with(
        &c,
        &[
            ("kustomization.yaml", kustomization),
            ("secret.yaml", sops_testdata("global-secret.yaml")),
        ],
    );
    let mut site = c.site(&repo, "");
    let key = write_identities(&site, &["keys-age-global.txt"]);
    c.set_source(
        &mut site,
        &repo,
        &format!(
            "[source.decryption]\nage_identities = \"{}\"",
            key.display()
        ),
    );
    site.sync_ok();
    assert_eq!(secret_value(&c).as_deref(), Some(PLAIN));
    // The API server keeps `stringData` as `data`; that is not drift, so the next pass writes nothing.
    let again = site.run(&["sync"]);
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && !log.contains("drifted"), "{log}");
    for needle in [PLAIN, PLAIN_B64] {
        assert_eq!(
            files_holding(&site.state_dir(), needle),
            Vec::<std::path::PathBuf>::new(),
            "{needle} in the state directory"
        );
    }

    // Offline (the Git host is gone) and the Secret deleted at the site: the last good comes back from the store.
    let moved = repo.bare_path().with_extension("away");
    std::fs::rename(repo.bare_path(), &moved).unwrap();
    let out = c.kubectl_or_double_delete("secrets", "global-age-secret");
    eprintln!("{out}");
    assert_eq!(secret_value(&c), None);
    site.run(&["sync"]);
    assert_eq!(secret_value(&c).as_deref(), Some(PLAIN));
    std::fs::rename(&moved, repo.bare_path()).unwrap();

    // A file encrypted for another key: refused with the file named, the Secret stays.
    repo.write(
        "secret.yaml",
        sops_testdata("algorithms-age.yaml").as_bytes(),
    );
    repo.commit("encrypted for a key this site does not hold");
    let out = site.sync_fails();
    assert!(
        out.contains("secret.yaml") && out.contains("none of the age identities"),
        "{out}"
    );
    assert_eq!(secret_value(&c).as_deref(), Some(PLAIN));

    // A value changed without sops: a MAC mismatch, the Secret stays.
    let tampered = sops_testdata("global-secret.yaml").replace("type: Opaque", "type: Other");
    repo.write("secret.yaml", tampered.as_bytes());
    repo.commit("edited by hand");
    let out = site.sync_fails();
    assert!(out.contains("secret.yaml: MAC mismatch"), "{out}");
    assert_eq!(secret_value(&c).as_deref(), Some(PLAIN));
    for needle in [PLAIN, PLAIN_B64] {
        assert!(files_holding(&site.state_dir(), needle).is_empty());
    }
}
