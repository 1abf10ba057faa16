//! `outpost check`: the offline checks and `--connect`, run as an operator runs them, with the real binary, a
//! real Git repository and real files.

mod common;

use common::hub::{keygen, Hub};
use common::{configmap, Site};
use outpost_tests::GitRepo;

fn check(site: &Site, args: &[&str]) -> (i32, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = site.run(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_good_site_passes_and_connect_names_the_commit_the_ref_points_at() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let commit = repo.commit("1");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");

    let (code, out) = check(&site, &[]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let (summary, findings) = lines.split_last().unwrap();
    assert!(findings.iter().all(|l| l.starts_with("ok ")), "{out}");
    assert_eq!(*summary, "4 checks: all passed (4 ok, 0 warnings)");
    assert!(
        out.contains("config:") && out.contains("state_dir:"),
        "{out}"
    );
    assert!(
        !out.contains(&commit),
        "offline checks do not touch Git: {out}"
    );

    let (code, out) = check(&site, &["--connect"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "ok   source \"app\" branch main: refs/heads/main at {commit}"
        )),
        "{out}"
    );
    assert!(
        !site.state_dir().join("store").exists(),
        "a check opens no store it would create"
    );
}

#[test]
fn broken_files_and_an_unreachable_ref_fail_naming_what_to_fix() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    repo.commit("1");
    let mut site = Site::new();
    std::fs::write(site.dir.path().join("ca.pem"), "not a certificate").unwrap();
    site.source(
        "app",
        &repo.file_url(),
        "branch = \"gone\"",
        "deploy",
        "ca_file = \"ca.pem\"",
    );
    let (code, out) = check(&site, &["--connect"]);
    assert_eq!(code, 1, "{out}");
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failed
            .iter()
            .any(|l| l.contains("source \"app\" ca_file") && l.contains("ca.pem")),
        "{out}"
    );
    assert!(
        failed
            .iter()
            .any(|l| l.contains("branch gone") && l.contains("does not exist on the remote")),
        "{out}"
    );
    assert!(out.contains("2 FAILED"), "{out}");
}

#[test]
fn an_invalid_config_is_exit_2_with_the_reason() {
    let site = Site::new();
    std::fs::write(site.config_path(), "[agent]\nid = \"bad id\"\n").unwrap();
    let out = site
        .command(&["check"])
        .output()
        .expect("run outpost check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.starts_with("FAIL config:"), "{stdout}");
    assert!(stdout.contains("[agent] id = \"bad id\""), "{stdout}");
}

/// `--connect` pings a real hub as this agent (a signed no-op): enrolled, not enrolled (with the command that
/// enrolls), the wrong `hub_key`, and a hub that is down; and the ping leaves nothing at the hub.
#[test]
fn connect_says_whether_the_hub_knows_this_agents_key() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    repo.commit("1");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    let agent_key = keygen(&site);
    let port = outpost_tests::support::free_port();
    let mut hub = Hub::start(site.dir.path(), &agent_key, port);
    site.tables = hub.upstream_table();
    let url = format!("http://127.0.0.1:{port}");

    let (code, out) = check(&site, &["--connect"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "ok   hub: enrolled: {url} knows this agent's key (SHA256:"
        )) && out.contains("as \"test-site\", and its answer is signed with [upstream] hub_key"),
        "{out}"
    );
    assert_eq!(hub.agent()["status"], "never-seen", "a ping stores nothing");

    // The hub's answer checked against a key that is not the hub's.
    let stranger = keygen(&Site::new());
    let hub_key = hub.public_key();
    site.tables = site.tables.replace(&hub_key, &stranger);
    let (code, out) = check(&site, &["--connect"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL hub: ")
            && out.contains("its answer is not signed with [upstream] hub_key"),
        "{out}"
    );
    site.tables = site.tables.replace(&stranger, &hub_key);

    // The same hub, now listing another agent's key under our id: we are not enrolled.
    hub.stop();
    hub.config_text = hub.config_text.replace(&agent_key, &stranger);
    hub.start_again();
    let (code, out) = check(&site, &["--connect"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "FAIL hub: not enrolled: {url} knows no agent with this key"
        )) && out.contains(&format!("outpost enroll --hub {url} --token-file FILE")),
        "{out}"
    );

    hub.stop();
    let (code, out) = check(&site, &["--connect"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FAIL hub: unreachable: {url}: ")),
        "{out}"
    );
}
