//! SOPS-encrypted files through the directory target with the real binary: a kustomization whose resource and
//! secretGenerator input are encrypted (and which sits beside another site's secret it never reads); the values
//! reach the target, never the state directory; `render` hides them unless asked; the last good comes back
//! offline from the store.

mod common;

use std::time::Duration;

use common::{configmap, files_holding, sops_testdata, wait_until, write_identities, Site};
use outpost_tests::GitRepo;

/// Plaintexts of the test files, as they could appear on disk: `global-secret.yaml`'s value as written and in
/// base64, and the dotenv file's `value` as secretGenerator writes it.
const NEEDLES: [&str; 3] = ["global-value", "Z2xvYmFsLXZhbHVl", "dmFsdWU="];

fn site_with_sops_kustomization() -> (GitRepo, Site) {
    let repo = GitRepo::new();
    repo.write(
        "app/kustomization.yaml",
        b"namePrefix: site-\nresources:\n- secret.yaml\n- cm.yaml\nsecretGenerator:\n- name: env\n  envs:\n  - app.env\n",
    );
    repo.write(
        "app/secret.yaml",
        sops_testdata("global-secret.yaml").as_bytes(),
    );
    repo.write("app/cm.yaml", configmap("settings", "1").as_bytes());
    repo.write("app/app.env", sops_testdata("envs-env.env").as_bytes());
    // Encrypted for a recipient this site has no identity for; no kustomization reads it.
    repo.write(
        "other/secret.yaml",
        sops_testdata("algorithms-age-pq.yaml").as_bytes(),
    );
    repo.commit("encrypted app");
    let mut site = Site::new();
    let key = write_identities(&site, &["keys-age-global.txt", "keys-age.txt"]);
    site.source(
        "app",
        &repo.file_url(),
        "branch = \"main\"",
        "app",
        &format!(
            "[source.decryption]\nage_identities = \"{}\"",
            key.display()
        ),
    );
    (repo, site)
}

fn assert_no_plaintext_in(site: &Site) {
    for needle in NEEDLES {
        assert_eq!(
            files_holding(&site.state_dir(), needle),
            Vec::<std::path::PathBuf>::new(),
            "{needle} in the state directory"
        );
    }
}

#[test]
fn encrypted_resources_and_generator_inputs_apply_and_stay_encrypted_at_rest() {
    let (repo, site) = site_with_sops_kustomization();
    site.sync_ok();
    let applied = site.applied("app");
    assert!(applied.contains("global-value"), "{applied}");
    assert!(
        applied.contains("dmFsdWU="),
        "the generated Secret: {applied}"
    );
    assert!(
        !applied.contains("ENC[AES256_GCM") && !applied.contains("sops:"),
        "{applied}"
    );
    assert_no_plaintext_in(&site);

    // A reboot without network and with the target emptied: `outpost run` re-applies the last good from the
    // store at start, decrypted.
    std::fs::remove_file(site.applied_file("app")).unwrap();
    let moved = repo.bare_path().with_extension("away");
    std::fs::rename(repo.bare_path(), &moved).unwrap();
    let daemon = site.spawn_daemon();
    wait_until(Duration::from_secs(20), "the last good re-applied", || {
        site.applied_file("app").exists()
    });
    assert!(daemon.terminate(), "outpost run exits cleanly on SIGTERM");
    let restored = site.applied("app");
    assert!(
        restored.contains("global-value") && restored.contains("dmFsdWU="),
        "{restored}"
    );
    assert_no_plaintext_in(&site);
    std::fs::rename(&moved, repo.bare_path()).unwrap();
}

#[test]
fn render_shows_decrypted_values_only_with_show_secrets() {
    let (_repo, site) = site_with_sops_kustomization();
    let out = site.run(&["render", "--source", "app"]);
    let hidden = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in NEEDLES {
        assert!(!hidden.contains(needle), "{needle}: {hidden}");
    }
    assert!(
        hidden.contains("hidden: outpost render --show-secrets"),
        "{hidden}"
    );
    assert!(hidden.contains("site-global-age-secret"), "{hidden}");
    let out = site.run(&["render", "--source", "app", "--show-secrets"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("global-value") && shown.contains("dmFsdWU="),
        "{shown}"
    );
}

#[test]
fn a_file_for_another_key_or_with_a_broken_mac_keeps_the_last_good() {
    let (repo, site) = site_with_sops_kustomization();
    site.sync_ok();
    let good = site.applied_revision("app");
    // The MAC is sealed with the file's `lastmodified`: a file whose date was edited by hand does not verify.
    let edited = sops_testdata("envs-env.env").replace("T13:33:42Z", "T13:33:43Z");
    assert_ne!(edited, sops_testdata("envs-env.env"));
    repo.write("app/app.env", edited.as_bytes());
    repo.commit("edited by hand");
    let out = site.sync_fails();
    assert!(out.contains("app/app.env: MAC mismatch"), "{out}");
    assert_eq!(site.applied_revision("app"), good);

    repo.write(
        "app/secret.yaml",
        sops_testdata("algorithms-age-pq.yaml").as_bytes(),
    );
    repo.write("app/app.env", sops_testdata("envs-env.env").as_bytes());
    repo.commit("encrypted for another recipient");
    let out = site.sync_fails();
    assert!(
        out.contains("app/secret.yaml") && out.contains("none of the age identities"),
        "{out}"
    );
    assert_eq!(site.applied_revision("app"), good);
    assert!(site.applied("app").contains("global-value"));
    assert_eq!(site.source_status("app")["state"], "Failed");
}

#[test]
fn without_decryption_a_sops_file_is_refused_by_name() {
    let repo = GitRepo::new();
    repo.write(
        "deploy/secret.yaml",
        sops_testdata("algorithms-age.yaml").as_bytes(),
    );
    repo.commit("encrypted");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    let out = site.sync_fails();
    assert!(
        out.contains("deploy/secret.yaml is SOPS-encrypted") && out.contains("[source.decryption]"),
        "{out}"
    );
    assert!(!site.applied_file("app").exists());
}
