//! `[source.verify]` end to end: commits and tags signed by the real `git` with keys made by `ssh-keygen` and
//! `gpg`, pulled by the real agent into a directory target. What is checked is what an operator sees: the files in
//! the target and the source's status.

mod common;
#[path = "common/signing.rs"]
mod signing;

use common::{configmap, Site};
use outpost_tests::{GitDaemon, GitHttpServer, GitRepo};
use signing::{commit_signed, graft_signature, tag_signed, Gpg, SshKey};

/// A site whose source `name` follows `reference` in `url`, folder `deploy`, with `[source.verify]` set to `verify`.
fn add_source(site: &mut Site, name: &str, url: &str, reference: &str, verify: &str) {
    site.source(
        name,
        url,
        reference,
        "deploy",
        &format!("[source.verify]\n{verify}"),
    );
}

fn write(site: &Site, file: &str, text: &str) -> String {
    let path = site.dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn short(id: &str) -> &str {
    &id[..7]
}

fn last_error(site: &Site, source: &str) -> String {
    let status = site.source_status(source);
    status["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The source applied `commit` and its content says `version`.
fn assert_applied(site: &Site, source: &str, commit: &str, version: &str) {
    assert_eq!(
        site.applied_revision(source).as_deref(),
        Some(commit),
        "{}",
        site.applied(source)
    );
    assert_eq!(
        site.applied_version(source, "app").as_deref(),
        Some(version)
    );
    let status = site.source_status(source);
    assert_eq!(status["state"], "Ready", "{status}");
    assert_eq!(status["last_good"], commit, "{status}");
}

/// The pass failed on `commit`, `good` stayed applied, and the status says why with `needles`.
fn assert_rejected(site: &Site, source: &str, good: Option<&str>, needles: &[&str]) -> String {
    let out = site.sync_fails();
    let error = last_error(site, source);
    for needle in needles {
        assert!(
            error.contains(needle),
            "status {error:?} lacks {needle:?}\n{out}"
        );
    }
    let status = site.source_status(source);
    assert_eq!(status["state"], "Failed", "{status}");
    assert_eq!(site.applied_revision(source).as_deref(), good);
    assert_eq!(status["last_good"].as_str(), good, "{status}");
    error
}

#[test]
fn ssh_signatures_of_every_key_type_are_applied_through_the_cache() {
    let keys_dir = tempfile::tempdir().unwrap();
    let ed = SshKey::generate(keys_dir.path(), "ed", "ed25519");
    let ecdsa = SshKey::generate(keys_dir.path(), "ecdsa", "ecdsa");
    let rsa = SshKey::generate(keys_dir.path(), "rsa", "rsa");
    let repo = GitRepo::new();
    // git daemon, so that the commits go through the fetch into the Git cache, not read in place.
    let daemon = GitDaemon::start(repo.serve_dir());
    let mut site = Site::new();
    let signers = write(
        &site,
        "allowed_signers",
        &format!(
            "# the ops team\n{}{}{}",
            ed.allowed_line("ed@example.com"),
            ecdsa.allowed_line("ecdsa@example.com"),
            rsa.allowed_line("rsa@example.com")
        ),
    );
    add_source(
        &mut site,
        "app",
        &daemon.url_for(repo.name()),
        "branch = \"main\"",
        &format!("mode = \"head\"\nallowed_signers = \"{signers}\"\n"),
    );
    for (n, key) in [&ed, &ecdsa, &rsa].into_iter().enumerate() {
        let version = (n + 1).to_string();
        repo.write("deploy/app.yaml", configmap("app", &version).as_bytes());
        let commit = commit_signed(&repo, &key.git_config(), &format!("app {version}"));
        site.sync_ok();
        assert_applied(&site, "app", &commit, &version);
    }
}

#[test]
fn unknown_key_unsigned_head_and_grafted_signature_are_rejected_and_last_good_stays() {
    let keys_dir = tempfile::tempdir().unwrap();
    let trusted = SshKey::generate(keys_dir.path(), "trusted", "ed25519");
    let stranger = SshKey::generate(keys_dir.path(), "stranger", "ed25519");
    let repo = GitRepo::new();
    let mut site = Site::new();
    let signers = write(
        &site,
        "allowed_signers",
        &trusted.allowed_line("ops@example.com"),
    );
    add_source(
        &mut site,
        "app",
        &repo.file_url(),
        "branch = \"main\"",
        &format!("mode = \"head\"\nallowed_signers = \"{signers}\"\n"),
    );
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let good = commit_signed(&repo, &trusted.git_config(), "app 1");
    site.sync_ok();
    assert_applied(&site, "app", &good, "1");

    // A key that is not in allowed_signers: the status names the commit and the key's fingerprint.
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    let bad = commit_signed(&repo, &stranger.git_config(), "app 2");
    let error = assert_rejected(
        &site,
        "app",
        Some(&good),
        &[
            &format!("commit {}", short(&bad)),
            &stranger.fingerprint,
            "which is not in",
            &signers,
        ],
    );
    assert!(!error.contains(&trusted.fingerprint), "{error}");
    assert_eq!(site.applied_version("app", "app").as_deref(), Some("1"));
    // The rejected revision is known now; the next pass must verify it again, not build it, and puts the last
    // good revision back where it was removed.
    std::fs::remove_file(site.applied_file("app")).unwrap();
    assert_rejected(&site, "app", Some(&good), &[&stranger.fingerprint]);
    assert_eq!(site.applied_version("app", "app").as_deref(), Some("1"));
    // The same after a restart of the daemon, which re-applies the stored last good revision first.
    std::fs::remove_file(site.applied_file("app")).unwrap();
    let daemon = site.spawn_daemon();
    common::wait_until(
        std::time::Duration::from_secs(20),
        "the last good revision restored",
        || site.applied_revision("app").as_deref() == Some(good.as_str()),
    );
    assert!(daemon.terminate());
    assert_eq!(site.applied_version("app", "app").as_deref(), Some("1"));

    // An unsigned head.
    repo.write("deploy/app.yaml", configmap("app", "3").as_bytes());
    let unsigned = commit_signed(&repo, &[], "app 3");
    assert_rejected(
        &site,
        "app",
        Some(&good),
        &[
            &format!("commit {}: unsigned", short(&unsigned)),
            "mode = \"head\" requires a signature from",
            &signers,
        ],
    );

    // A trusted signature over other content: the signed commit's gpgsig grafted onto an edited copy.
    repo.write("deploy/app.yaml", configmap("app", "4").as_bytes());
    let signed = commit_signed(&repo, &trusted.git_config(), "app 4");
    site.sync_ok();
    assert_applied(&site, "app", &signed, "4");
    let forged = graft_signature(&repo, "app 4, reworded after signing");
    assert_ne!(forged, signed);
    assert_rejected(
        &site,
        "app",
        Some(&signed),
        &[
            &format!("commit {}", short(&forged)),
            &trusted.fingerprint,
            "does not match",
        ],
    );
}

#[test]
fn a_signed_tag_on_an_unsigned_head_in_each_mode() {
    let keys_dir = tempfile::tempdir().unwrap();
    let key = SshKey::generate(keys_dir.path(), "release", "ed25519");
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let commit = commit_signed(&repo, &[], "app 1");
    let tag_object = tag_signed(&repo, &key.git_config(), "v1.0.0");
    assert_ne!(tag_object, commit);
    let daemon = GitDaemon::start(repo.serve_dir());
    let url = daemon.url_for(repo.name());
    // Over HTTP the probe is our own ls-refs request, which must keep the tag object id too.
    let http = GitHttpServer::start(repo.serve_dir());
    let mut site = Site::new();
    let signers = write(
        &site,
        "allowed_signers",
        &key.allowed_line("release@example.com"),
    );
    add_source(
        &mut site,
        "over-http",
        &http.url_for(repo.name()),
        "tag = \"v1.0.0\"",
        &format!("mode = \"tag\"\nallowed_signers = \"{signers}\"\n"),
    );
    for (name, reference, mode) in [
        ("by-tag", "tag = \"v1.0.0\"", "tag"),
        ("by-range", "semver = \">=1.0.0\"", "tag"),
        ("by-head", "tag = \"v1.0.0\"", "head"),
        ("by-both", "tag = \"v1.0.0\"", "tag_and_head"),
    ] {
        add_source(
            &mut site,
            name,
            &url,
            reference,
            &format!("mode = \"{mode}\"\nallowed_signers = \"{signers}\"\n"),
        );
    }
    site.sync_fails();
    assert_applied(&site, "by-tag", &commit, "1");
    assert_applied(&site, "over-http", &commit, "1");
    assert_applied(&site, "by-range", &commit, "1");
    for name in ["by-head", "by-both"] {
        let error = last_error(&site, name);
        assert!(
            error.contains(&format!("commit {}: unsigned", short(&commit))),
            "{name}: {error}"
        );
        assert_eq!(site.applied(name), "", "{name} must apply nothing");
    }

    // A lightweight tag carries no signature at all.
    repo.tag("v2.0.0");
    let mut site = Site::new();
    let signers = write(
        &site,
        "allowed_signers",
        &key.allowed_line("release@example.com"),
    );
    add_source(
        &mut site,
        "light",
        &url,
        "tag = \"v2.0.0\"",
        &format!("mode = \"tag\"\nallowed_signers = \"{signers}\"\n"),
    );
    site.sync_fails();
    assert!(last_error(&site, "light").contains("tag v2.0.0 is a lightweight tag"));
    assert_eq!(site.applied("light"), "");
}

#[test]
fn openpgp_signatures_and_expired_or_revoked_keys() {
    if !signing::gpg_available() {
        eprintln!("SKIPPED: gpg is not installed (apt-get install gnupg)");
        return;
    }
    let gpg = Gpg::new();
    let good = gpg.generate("Good <good@example.com>", None);
    let revoked = gpg.generate("Revoked <revoked@example.com>", None);
    let expired = gpg.generate("Expired <expired@example.com>", Some("20200101T000000"));

    let repo = GitRepo::new();
    let mut site = Site::new();
    add_source(
        &mut site,
        "app",
        &repo.file_url(),
        "branch = \"main\"",
        "mode = \"head\"\npgp_keys = \"keys.asc\"\n",
    );

    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let applied = commit_signed(&repo, &gpg.git_config(&good, None), "app 1");
    std::fs::write(
        site.dir.path().join("keys.asc"),
        gpg.export(&[&good, &revoked, &expired]),
    )
    .unwrap();
    site.sync_ok();
    assert_applied(&site, "app", &applied, "1");

    // Signed while the key did not expire, at a (faked) 2020-01-10...
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    let late = commit_signed(
        &repo,
        &gpg.git_config(&expired, Some("20200110T000000")),
        "app 2",
    );
    // ... then the key was set to expire on 2020-01-02, with a self-signature dated before the commit's signature.
    gpg.set_expiry(&expired, "20200101T010000");
    std::fs::write(
        site.dir.path().join("keys.asc"),
        gpg.export(&[&good, &revoked, &expired]),
    )
    .unwrap();
    assert_rejected(
        &site,
        "app",
        Some(&applied),
        &[
            &format!("commit {}", short(&late)),
            &expired,
            "expired on 2020-01-02 01:00:00 UTC",
        ],
    );

    repo.write("deploy/app.yaml", configmap("app", "3").as_bytes());
    let by_revoked = commit_signed(&repo, &gpg.git_config(&revoked, None), "app 3");
    gpg.revoke(&revoked);
    std::fs::write(
        site.dir.path().join("keys.asc"),
        gpg.export(&[&good, &revoked, &expired]),
    )
    .unwrap();
    assert_rejected(
        &site,
        "app",
        Some(&applied),
        &[
            &format!("commit {}", short(&by_revoked)),
            &revoked,
            "revoked",
        ],
    );

    // A key that is not in the file at all.
    std::fs::write(site.dir.path().join("keys.asc"), gpg.export(&[&good])).unwrap();
    assert_rejected(
        &site,
        "app",
        Some(&applied),
        &[&revoked, "which is not in", "keys.asc"],
    );

    repo.write("deploy/app.yaml", configmap("app", "4").as_bytes());
    let fine = commit_signed(&repo, &gpg.git_config(&good, None), "app 4");
    site.sync_ok();
    assert_applied(&site, "app", &fine, "4");
}
