//! Issue 20's operational controls in the daemon's pipeline, run with the real binary: maintenance windows
//! against a clock the test sets (`OUTPOST_TEST_NOW`), and `depends_on` across three sources with a failing
//! middle one; and suspend / resume beside a running daemon.

mod common;

use std::time::Duration;

use common::{configmap, wait_until, Site};
use outpost_tests::GitRepo;

fn sync_at(site: &Site, now: &str) -> String {
    site.write_config();
    let out = site
        .command(&["sync"])
        .env("OUTPOST_TEST_NOW", now)
        .output()
        .expect("run outpost sync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "sync at {now}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_new_revision_waits_for_its_maintenance_window() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let first = repo.commit("1");
    let mut site = Site::new();
    site.source(
        "app",
        &repo.file_url(),
        "branch = \"main\"",
        "deploy",
        "windows = [\"Sat,Sun 00:00-24:00\"]\ntimezone = \"Europe/Berlin\"",
    );
    // Friday 2026-12-11 12:00 in Berlin: closed.
    let out = sync_at(&site, "2026-12-11T11:00:00Z");
    assert!(
        out.contains(&format!(
            "app: {first} not applied yet: outside the maintenance windows"
        )),
        "{out}"
    );
    assert!(
        out.contains("the next opens at 2026-12-11T23:00:00Z"),
        "{out}"
    );
    assert!(!site.applied_file("app").exists());
    assert_eq!(site.source_status("app")["state"], "Waiting");
    // Saturday: open.
    let out = sync_at(&site, "2026-12-12T10:00:00Z");
    assert!(out.contains(&format!("app: applied {first}")), "{out}");
    assert_eq!(site.applied_version("app", "app").as_deref(), Some("1"));
}

#[test]
fn depends_on_holds_a_source_behind_a_failing_one() {
    let repo = GitRepo::new();
    repo.write("base/a.yaml", configmap("base", "1").as_bytes());
    repo.write("middle/b.yaml", b"kind: [unclosed");
    repo.write("top/c.yaml", configmap("top", "1").as_bytes());
    repo.commit("1");
    let mut site = Site::new();
    site.source("base", &repo.file_url(), "branch = \"main\"", "base", "");
    site.source(
        "middle",
        &repo.file_url(),
        "branch = \"main\"",
        "middle",
        "depends_on = [\"base\"]",
    );
    site.source(
        "top",
        &repo.file_url(),
        "branch = \"main\"",
        "top",
        "depends_on = [\"middle\"]",
    );
    let out = site.sync_fails();
    assert!(out.contains("middle: FAILED"), "{out}");
    assert!(
        out.contains("top:") && out.contains("not applied yet: waiting for \"middle\" (not Ready)"),
        "{out}"
    );
    assert!(site.applied_file("base").exists());
    assert!(!site.applied_file("top").exists());
    assert_eq!(site.source_status("top")["state"], "Waiting");

    repo.write("middle/b.yaml", configmap("middle", "1").as_bytes());
    repo.commit("fix");
    site.sync_ok();
    assert_eq!(site.applied_version("top", "top").as_deref(), Some("1"));

    // A source that depends on itself is a config error, said before anything runs.
    site.source(
        "loop",
        &repo.file_url(),
        "branch = \"main\"",
        "top",
        "depends_on = [\"loop\"]",
    );
    let out = site.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("depends_on"), "{stderr}");
}

#[test]
fn suspend_and_resume_reach_a_running_daemon_and_outlast_a_restart() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    repo.commit("1");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    site.sync_ok();
    let daemon = site.spawn_daemon();

    let out = site.run(&[
        "suspend",
        "--source",
        "app",
        "--reason",
        "stocktaking until Monday",
    ]);
    assert!(out.status.success());
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    repo.commit("2");
    wait_until(
        Duration::from_secs(20),
        "the daemon to see the suspension",
        || {
            site.try_source_status("app")
                .is_some_and(|s| s["state"] == "Suspended")
        },
    );
    let status = site.source_status("app");
    let error = status["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("suspended by ") && error.contains("stocktaking until Monday"),
        "{status}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        site.applied_version("app", "app").as_deref(),
        Some("1"),
        "nothing new applied while suspended"
    );

    // A restart keeps it suspended.
    assert!(daemon.terminate(), "the daemon stops cleanly");
    let out = site.run(&["sync"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("app: suspended by"), "{stdout}");
    assert_eq!(site.applied_version("app", "app").as_deref(), Some("1"));

    let daemon = site.spawn_daemon();
    assert!(site.run(&["resume", "--source", "app"]).status.success());
    wait_until(
        Duration::from_secs(20),
        "the new revision after resume",
        || site.applied_version("app", "app").as_deref() == Some("2"),
    );
    assert!(daemon.terminate());
    let out = site.run(&["suspend", "--source", "nope", "--reason", "x"]);
    assert!(!out.status.success(), "an unknown source is refused");
}

#[test]
fn reconcile_polls_now_beside_a_running_daemon() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    repo.commit("1");
    let mut site = Site::new();
    // An hour between polls: only `outpost reconcile` can bring the new revision in time.
    site.source(
        "app",
        &repo.file_url(),
        "branch = \"main\"",
        "deploy",
        "interval = \"1h\"",
    );
    // Without a daemon, reconcile runs the pass itself.
    let out = site.run(&["reconcile", "--source", "app"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("app: applied"),
        "{out:?}"
    );
    let daemon = site.spawn_daemon();
    wait_until(Duration::from_secs(20), "the daemon's status", || {
        site.try_source_status("app")
            .is_some_and(|s| s["next_poll"].is_number())
    });
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    repo.commit("2");
    let out = site.run(&["reconcile", "--source", "app"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("asked outpost run (pid"), "{stdout}");
    wait_until(
        Duration::from_secs(20),
        "the new revision, long before the next poll",
        || site.applied_version("app", "app").as_deref() == Some("2"),
    );
    assert!(daemon
        .log()
        .contains("polling now: asked by `outpost reconcile`"));
    assert!(daemon.terminate());
}
