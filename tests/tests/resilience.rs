//! Nothing lost: bad revisions, bad config, unreachable hosts, restarts offline and kill -9 all leave the last
//! good revision applied and the store usable.

mod common;

use std::time::Duration;

use common::{configmap, wait_until, Site};
use outpost_tests::{GitDaemon, GitRepo};

fn good_site(repo: &GitRepo, extra_agent: &str) -> (Site, String) {
    repo.write("deploy/app.yaml", configmap("app", "good").as_bytes());
    let good = repo.commit("good");
    let mut site = Site::new();
    site.agent_extra = extra_agent.to_string();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    site.sync_ok();
    assert_eq!(site.applied_revision("app").as_deref(), Some(good.as_str()));
    (site, good)
}

/// Commits `change` on top of a good revision and checks that the sync fails with `expected` in its message
/// while the good revision stays applied and recorded as last good.
fn assert_rejected(extra_agent: &str, change: impl FnOnce(&GitRepo), expected: &str) {
    let repo = GitRepo::new();
    let (site, good) = good_site(&repo, extra_agent);
    change(&repo);
    let bad = repo.commit("bad");
    let out = site.sync_fails();
    assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
    assert_eq!(
        site.applied_revision("app").as_deref(),
        Some(good.as_str()),
        "last good stays applied"
    );
    let status = site.source_status("app");
    assert_eq!(status["last_good"], good.as_str());
    assert_eq!(status["fetched"], bad.as_str());
    assert_eq!(status["state"], "Failed");
    assert!(
        status["last_error"].as_str().unwrap().contains(expected),
        "{status}"
    );
    // A second poll of the same broken commit fails the same way and still changes nothing.
    let again = site.sync_fails();
    assert!(again.contains(expected));
    assert_eq!(site.applied_revision("app").as_deref(), Some(good.as_str()));
}

#[test]
fn malformed_yaml_names_file_and_line() {
    assert_rejected(
        "",
        |r| {
            r.write(
                "deploy/bad.yaml",
                b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n",
            )
        },
        "deploy/bad.yaml, line ",
    );
}

#[test]
fn document_without_kind_or_name() {
    assert_rejected(
        "",
        |r| r.write("deploy/bad.yaml", b"apiVersion: v1\nmetadata:\n  name: x\n"),
        "has no kind",
    );
    assert_rejected(
        "",
        |r| {
            r.write(
                "deploy/bad.yaml",
                b"apiVersion: v1\nkind: Secret\nmetadata: {}\n",
            )
        },
        "has no metadata.name",
    );
}

#[test]
fn duplicate_object() {
    assert_rejected(
        "",
        |r| r.write("deploy/copy.yaml", configmap("app", "copy").as_bytes()),
        "ConfigMap app is defined twice",
    );
}

#[test]
fn path_missing_from_revision() {
    assert_rejected(
        "",
        |r| r.remove("deploy/app.yaml"),
        "path \"deploy\" does not exist in this revision",
    );
}

#[test]
fn symlink_outside_the_tree_is_never_followed() {
    assert_rejected(
        "",
        |r| r.symlink("deploy/passwd.yaml", "../../../../etc/passwd"),
        "symlinks are never followed",
    );
}

#[test]
fn file_over_the_size_limit() {
    assert_rejected(
        "max_file_size = \"1KiB\"",
        |r| {
            r.write(
                "deploy/big.yaml",
                format!(
                    "{}  padding: \"{}\"\n",
                    configmap("big", "1"),
                    "x".repeat(2000)
                )
                .as_bytes(),
            )
        },
        "over the 1024 byte limit",
    );
}

#[test]
fn bundle_over_the_object_limit() {
    let many: String = (0..3)
        .map(|i| configmap(&format!("extra{i}"), "1") + "---\n")
        .collect();
    assert_rejected(
        "max_objects = 3",
        |r| r.write("deploy/many.yaml", many.as_bytes()),
        "more than 3 objects",
    );
}

#[test]
fn non_utf8_content() {
    assert_rejected(
        "",
        |r| {
            r.write(
                "deploy/latin1.yaml",
                b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caf\xe9\n",
            )
        },
        "not valid UTF-8",
    );
}

#[test]
fn kustomization_with_a_missing_generator_file_is_rejected() {
    assert_rejected(
        "",
        |r| {
            r.write(
                "deploy/kustomization.yaml",
                b"resources: [app.yaml]\nconfigMapGenerator:\n- name: env\n  envs: [missing.env]\n",
            )
        },
        "deploy/kustomization.yaml: \"missing.env\" does not exist",
    );
}

#[test]
fn kustomization_below_the_path_is_refused() {
    // Its folder must be built, never applied as plain files: point path at it instead.
    assert_rejected(
        "",
        |r| {
            r.write(
                "deploy/overlay/kustomization.yaml",
                b"resources: [../app.yaml]\n",
            )
        },
        "deploy/overlay/kustomization.yaml: a kustomization below the source's path",
    );
}

#[test]
fn unreachable_url_is_a_clear_error() {
    let port = outpost_tests::support::free_port();
    let mut site = Site::new();
    site.source(
        "app",
        &format!("git://127.0.0.1:{port}/nothing.git"),
        "branch = \"main\"",
        "deploy",
        "",
    );
    let out = site.sync_fails();
    assert!(
        out.contains(&format!("127.0.0.1:{port}")) && out.contains("unreachable"),
        "{out}"
    );
    assert_eq!(site.source_status("app")["state"], "Failed");
}

#[test]
fn unknown_config_key_is_named() {
    let mut site = Site::new();
    site.source(
        "app",
        "file:///nowhere",
        "branch = \"main\"",
        "deploy",
        "intervall = \"5m\"",
    );
    let out = site.run(&["sync"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("intervall") && err.contains("agent.toml"),
        "{err}"
    );
}

#[test]
fn git_server_down_then_back_and_restart_offline() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let first = repo.commit("1");
    let mut daemon = GitDaemon::start(repo.serve_dir());
    let mut site = Site::new();
    site.source(
        "app",
        &daemon.url_for(repo.name()),
        "branch = \"main\"",
        "deploy",
        "",
    );
    let agent = site.spawn_daemon();
    wait_until(Duration::from_secs(30), "first revision applied", || {
        site.applied_revision("app").as_deref() == Some(first.as_str())
    });

    // Server down: the site keeps its last good, says Stale, and a new commit waits.
    daemon.stop();
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    let second = repo.commit("2");
    wait_until(Duration::from_secs(30), "status Stale", || {
        site.source_status("app")["state"] == "Stale"
    });
    assert_eq!(
        site.applied_revision("app").as_deref(),
        Some(first.as_str())
    );

    // Server back: the new commit arrives (backoff for a 1s interval tops out at 10s).
    daemon.start_again();
    wait_until(Duration::from_secs(40), "second revision applied", || {
        site.applied_revision("app").as_deref() == Some(second.as_str())
    });
    assert!(agent.terminate(), "SIGTERM ends the daemon cleanly");

    // Reboot with the uplink down and the target folder wiped: the last good comes back from the store.
    daemon.stop();
    std::fs::remove_dir_all(site.target_dir()).unwrap();
    let agent = site.spawn_daemon();
    wait_until(
        Duration::from_secs(20),
        "last good re-applied offline",
        || site.applied_revision("app").as_deref() == Some(second.as_str()),
    );
    wait_until(
        Duration::from_secs(20),
        "status Stale while offline",
        || site.source_status("app")["state"] == "Stale",
    );
    let log = agent.log();
    assert!(
        log.contains("last good revision re-applied from the store"),
        "{log}"
    );
    assert!(agent.terminate());
}

#[test]
fn status_works_while_run_holds_the_store() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let head = repo.commit("1");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    let agent = site.spawn_daemon();
    wait_until(Duration::from_secs(30), "applied", || {
        site.applied_revision("app").as_deref() == Some(head.as_str())
    });
    wait_until(Duration::from_secs(10), "status from the daemon", || {
        let s = site.status_json();
        s["daemon_pid"] == agent.child.id() && s["sources"][0]["state"] == "Ready"
    });
    let status = site.source_status("app");
    assert!(status["next_poll"].as_u64().is_some(), "{status}");
    let table = site.run(&["status"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("outpost run is running"));
    // Another writer is turned away with a message that says why.
    let out = site.run(&["sync"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another outpost process"));
    // The liveness check a pod's exec probe runs: alive while the daemon runs, not once it is killed.
    let check = site.run(&["status", "--check"]);
    assert!(check.status.success());
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("ok: outpost run (pid "));
    agent.kill9();
    let check = site.run(&["status", "--check"]);
    assert!(!check.status.success());
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("is gone"),
        "a killed daemon is reported dead"
    );
}

#[test]
fn removed_source_is_pruned_only_with_prune_on() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    repo.commit("1");
    let mut site = Site::new();
    site.source("keep", &repo.file_url(), "branch = \"main\"", "deploy", "");
    site.source("gone", &repo.file_url(), "branch = \"main\"", "deploy", "");
    site.source(
        "left",
        &repo.file_url(),
        "branch = \"main\"",
        "deploy",
        "prune = false",
    );
    site.sync_ok();
    assert!(site.applied_file("gone").exists() && site.applied_file("left").exists());
    site.sources.truncate(1);
    site.sync_ok();
    assert!(site.applied_file("keep").exists());
    assert!(
        !site.applied_file("gone").exists(),
        "removed source with prune = true is pruned"
    );
    assert!(
        site.applied_file("left").exists(),
        "prune = false leaves the file"
    );
}

#[test]
fn render_shows_current_and_older_revisions() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let first = repo.commit("1");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    site.sync_ok();
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    let second = repo.commit("2");
    let now = site.run(&["render", "--source", "app"]);
    assert!(now.status.success());
    let text = String::from_utf8_lossy(&now.stdout);
    assert!(
        text.contains(&second) && text.contains("version: '2'"),
        "{text}"
    );
    assert_eq!(
        site.applied_revision("app").as_deref(),
        Some(first.as_str()),
        "render applies nothing"
    );
    let old = site.run(&["render", "--source", "app", "--revision", &first]);
    assert!(String::from_utf8_lossy(&old.stdout).contains("version: '1'"));
    let unknown = site.run(&["render", "--source", "nope"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("known sources: app"));
}

#[test]
fn json_logs_and_no_secrets() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    repo.commit("1");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    let out = site.run(&["--log-format", "json", "sync"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string());
    }
}

#[test]
fn changing_the_path_rebuilds_the_same_commit() {
    let repo = GitRepo::new();
    repo.write("a/app.yaml", configmap("app", "from-a").as_bytes());
    repo.write("b/app.yaml", configmap("app", "from-b").as_bytes());
    let head = repo.commit("two folders");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "a", "");
    site.sync_ok();
    assert_eq!(
        site.applied_version("app", "app").as_deref(),
        Some("from-a")
    );
    site.sources.clear();
    site.source("app", &repo.file_url(), "branch = \"main\"", "b", "");
    let out = site.sync_ok();
    assert!(
        out.contains("applied"),
        "a new build, not 'unchanged': {out}"
    );
    assert_eq!(
        site.applied_version("app", "app").as_deref(),
        Some("from-b")
    );
    assert_eq!(site.applied_revision("app").as_deref(), Some(head.as_str()));
}

#[test]
fn password_in_url_never_reaches_output_or_state() {
    let port = outpost_tests::support::free_port();
    let mut site = Site::new();
    let url = format!("http://site:pw-in-url-123@127.0.0.1:{port}/repo.git");
    site.source("app", &url, "branch = \"main\"", "deploy", "");
    let out = site.sync_fails();
    assert!(out.contains("***@127.0.0.1"), "{out}");
    assert!(!out.contains("pw-in-url-123"), "{out}");
    let status = serde_json::to_string(&site.status_json()).unwrap();
    assert!(!status.contains("pw-in-url-123"), "{status}");
}

/// `len` bytes that no compression shrinks (xorshift), so a pack holding them is at least that large.
fn incompressible(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// A source served by `git daemon` (fetched into the Git cache, where the size limits apply) gets a 3 MiB
/// file outside its path; the sync fails naming `expected`, the good revision stays applied, and a commit that
/// removes the file is applied again.
fn assert_too_large(extra_agent: &str, expected: &str) {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "good").as_bytes());
    let good = repo.commit("good");
    let daemon = GitDaemon::start(repo.serve_dir());
    let mut site = Site::new();
    site.agent_extra = extra_agent.to_string();
    site.source(
        "app",
        &daemon.url_for(repo.name()),
        "branch = \"main\"",
        "deploy",
        "",
    );
    site.sync_ok();
    assert_eq!(site.applied_revision("app").as_deref(), Some(good.as_str()));

    repo.write("assets/dump.bin", &incompressible(3 * 1024 * 1024, 7));
    repo.commit("someone committed a dump");
    let out = site.sync_fails();
    assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
    assert!(out.contains("[agent] "), "the fix is named: {out}");
    assert_eq!(site.applied_revision("app").as_deref(), Some(good.as_str()));
    let status = site.source_status("app");
    assert_eq!(status["last_good"], good.as_str());
    assert_eq!(status["state"], "Failed");
    assert!(
        status["last_error"].as_str().unwrap().contains(expected),
        "{status}"
    );
    // The cache does not keep what was refused.
    let cache = site.state_dir().join("git");
    let held: u64 = walk_size(&cache);
    assert!(
        held < 1024 * 1024,
        "{held} bytes left in {}",
        cache.display()
    );

    repo.remove("assets/dump.bin");
    repo.write("deploy/app.yaml", configmap("app", "fixed").as_bytes());
    let fixed = repo.commit("dump removed");
    site.sync_ok();
    assert_eq!(
        site.applied_revision("app").as_deref(),
        Some(fixed.as_str())
    );
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

#[test]
fn a_transfer_over_max_pack_size_is_stopped() {
    assert_too_large("max_pack_size = \"1MiB\"", "max_pack_size (1.0 MiB)");
}

#[test]
fn a_repository_over_max_repo_size_is_refused() {
    assert_too_large("max_repo_size = \"1MiB\"", "over max_repo_size (1.0 MiB)");
}
