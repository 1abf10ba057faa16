//! Every URL kind against a real server, every ref kind, credentials, and the cost of an unchanged poll.

mod common;

use common::{configmap, files_holding, https_token_site, Site};
use outpost_tests::{GitDaemon, GitHttpServer, GitRepo, HttpProxy, SshServer};

/// A repository with one manifest under `deploy/`.
fn repo_with(version: &str) -> GitRepo {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", version).as_bytes());
    repo.write("README.md", b"not a manifest\n");
    repo.commit(&format!("app {version}"));
    repo
}

/// A site with one source "app" following branch main, folder deploy.
fn main_site(url: &str) -> Site {
    let mut site = Site::new();
    site.source("app", url, "branch = \"main\"", "deploy", "");
    site
}

fn assert_applied(site: &Site, source: &str, commit: &str, version: &str) {
    assert_eq!(site.applied_revision(source).as_deref(), Some(commit));
    assert_eq!(
        site.applied_version(source, "app").as_deref(),
        Some(version),
        "{}",
        site.applied(source)
    );
    let status = site.source_status(source);
    assert_eq!(status["state"], "Ready", "{status}");
    assert_eq!(status["last_good"], commit);
    assert!(
        status["inventory_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:") && d.len() == 71),
        "{status}"
    );
}

#[test]
fn file_url_branch() {
    let repo = repo_with("1");
    let site = main_site(&repo.file_url());
    site.sync_ok();
    assert_applied(&site, "app", &repo.head(), "1");
    assert!(!site.applied("app").contains("not a manifest"));
}

#[test]
fn git_daemon_url() {
    let repo = repo_with("1");
    let daemon = GitDaemon::start(repo.serve_dir());
    let site = main_site(&daemon.url_for(repo.name()));
    site.sync_ok();
    assert_applied(&site, "app", &repo.head(), "1");
}

#[test]
fn http_url_and_probe_only_when_unchanged() {
    let repo = repo_with("1");
    let server = GitHttpServer::start(repo.serve_dir());
    let site = main_site(&server.url_for(repo.name()));
    site.sync_ok();
    assert_applied(&site, "app", &repo.head(), "1");

    server.reset_counters();
    let out = site.sync_ok();
    assert!(out.contains("unchanged"), "{out}");
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        1,
        "an unchanged poll is one request: {requests:?}"
    );
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert!(r.path_and_query.ends_with("/git-upload-pack"), "{r:?}");
    assert!(
        r.request_bytes + r.response_bytes < 2048,
        "under 2 KiB: {r:?}"
    );

    // A new commit: now a fetch happens, and only what is needed.
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    let second = repo.commit("app 2");
    server.reset_counters();
    site.sync_ok();
    assert_applied(&site, "app", &second, "2");
    assert!(
        server.requests().len() >= 2,
        "probe then fetch: {:?}",
        server.requests()
    );
}

#[test]
fn https_with_ca_file_and_bearer_token() {
    let repo = repo_with("1");
    let server = GitHttpServer::builder(repo.serve_dir())
        .tls(true)
        .require_bearer("s3cret-token-value")
        .start();
    let (site, token) = https_token_site(&server, &repo, "s3cret-token-value");
    site.sync_ok();
    assert_applied(&site, "app", &repo.head(), "1");

    // A wrong token: a clear error that points at the token, which never appears in output or store.
    std::fs::write(&token, "wrong-token-value\n").unwrap();
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    repo.commit("app 2");
    let out = site.sync_fails();
    assert!(out.contains("401") && out.contains("token_file"), "{out}");
    assert!(
        !out.contains("wrong-token-value") && !out.contains("s3cret-token-value"),
        "{out}"
    );
    let status = site.source_status("app");
    assert_eq!(
        status["state"], "Stale",
        "last good keeps running: {status}"
    );
    assert!(status["last_error"]
        .as_str()
        .unwrap()
        .contains("token_file"));
    assert!(
        site.applied("app").contains("version: '1'"),
        "last good stays applied"
    );
    // Neither token is anywhere in the state directory (store, Git cache, status snapshot).
    for token in ["s3cret-token-value", "wrong-token-value"] {
        let found = files_holding(&site.state_dir(), token);
        assert!(found.is_empty(), "token found in {found:?}");
    }
}

#[test]
fn https_untrusted_certificate_is_explained() {
    let repo = repo_with("1");
    let server = GitHttpServer::builder(repo.serve_dir()).tls(true).start();
    let site = main_site(&server.url_for(repo.name()));
    let out = site.sync_fails();
    assert!(out.contains("ca_file"), "{out}");
}

#[test]
fn http_basic_auth() {
    let repo = repo_with("1");
    let server = GitHttpServer::builder(repo.serve_dir())
        .require_basic("site42", "pa55word")
        .start();
    let mut site = Site::new();
    let pw = site.dir.path().join("pw");
    std::fs::write(&pw, "pa55word").unwrap();
    site.source(
        "app",
        &server.url_for(repo.name()),
        "branch = \"main\"",
        "deploy",
        &format!(
            "[source.auth]\nusername = \"site42\"\npassword_file = \"{}\"",
            pw.display()
        ),
    );
    site.sync_ok();
    assert_applied(&site, "app", &repo.head(), "1");
}

/// Runs `outpost sync` with the given proxy environment; returns whether it succeeded.
fn sync_with_env(site: &Site, env: &[(&str, &str)]) -> bool {
    site.write_config();
    let mut cmd = site.command(&["sync"]);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out.status.success()
}

#[test]
fn http_proxy_is_honoured() {
    let repo = repo_with("1");
    let server = GitHttpServer::start(repo.serve_dir());
    let proxy = HttpProxy::start();
    let site = main_site(&server.url_for(repo.name()));
    assert!(sync_with_env(&site, &[("HTTP_PROXY", &proxy.url())]));
    assert!(
        proxy.hits() >= 2,
        "probe and fetch went through the proxy: {:?}",
        proxy.requests()
    );
    assert_applied(&site, "app", &repo.head(), "1");
}

#[test]
fn https_proxy_and_no_proxy_are_honoured() {
    let repo = repo_with("1");
    let server = GitHttpServer::builder(repo.serve_dir()).tls(true).start();
    let proxy = HttpProxy::start();
    let mut site = Site::new();
    let ca = server.write_ca(site.dir.path());
    let extra = format!("ca_file = \"{}\"", ca.display());
    site.source(
        "app",
        &server.url_for(repo.name()),
        "branch = \"main\"",
        "deploy",
        &extra,
    );
    assert!(sync_with_env(&site, &[("HTTPS_PROXY", &proxy.url())]));
    assert!(proxy.hits() >= 2, "CONNECT tunnels: {:?}", proxy.requests());
    assert_applied(&site, "app", &repo.head(), "1");

    // NO_PROXY exempts the host: a new commit arrives without touching the proxy.
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    let second = repo.commit("2");
    proxy.reset();
    assert!(sync_with_env(
        &site,
        &[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", "127.0.0.1")]
    ));
    assert_eq!(proxy.hits(), 0, "{:?}", proxy.requests());
    assert_applied(&site, "app", &second, "2");
}

#[test]
fn ssh_url_with_known_hosts() {
    let repo = repo_with("1");
    let sshd = SshServer::start();
    let mut site = Site::new();
    let auth = |kh: &std::path::Path| {
        format!(
            "[source.auth]\nssh_key_file = \"{}\"\nknown_hosts_file = \"{}\"",
            sshd.client_key_path().display(),
            kh.display()
        )
    };
    site.source(
        "app",
        &sshd.url_for(repo.bare_path()),
        "branch = \"main\"",
        "deploy",
        &auth(&sshd.known_hosts_path()),
    );
    site.sync_ok();
    assert_applied(&site, "app", &repo.head(), "1");

    // A host key that does not match known_hosts is refused.
    let mut wrong = Site::new();
    wrong.source(
        "app",
        &sshd.url_for(repo.bare_path()),
        "branch = \"main\"",
        "deploy",
        &auth(&sshd.wrong_known_hosts_path()),
    );
    let out = wrong.sync_fails();
    assert!(out.to_lowercase().contains("host key"), "{out}");
    assert!(wrong.applied("app").is_empty());
}

#[test]
fn tag_semver_and_commit_refs() {
    let repo = repo_with("1.0");
    let v1 = repo.annotated_tag("v1.0.0", "release 1.0");
    repo.write("deploy/app.yaml", configmap("app", "1.5").as_bytes());
    let v15 = repo.commit("1.5");
    repo.tag("v1.5.0");
    repo.write("deploy/app.yaml", configmap("app", "2.0").as_bytes());
    let v2 = repo.commit("2.0");
    repo.tag("v2.0.0");
    repo.write("deploy/app.yaml", configmap("app", "main").as_bytes());
    repo.commit("unreleased");

    let daemon = GitDaemon::start(repo.serve_dir());
    let url = daemon.url_for(repo.name());
    let mut site = Site::new();
    site.source("tagged", &url, "tag = \"v1.0.0\"", "deploy", "");
    site.source("ranged", &url, "semver = \">=1.0.0 <2\"", "deploy", "");
    site.source("pinned", &url, &format!("commit = \"{v2}\""), "deploy", "");
    site.sync_ok();
    assert_applied(&site, "tagged", &v1, "1.0");
    assert_applied(&site, "ranged", &v15, "1.5");
    assert_applied(&site, "pinned", &v2, "2.0");

    // A new tag inside the range moves the semver source, and only it.
    repo.write("deploy/app.yaml", configmap("app", "1.9").as_bytes());
    let v19 = repo.commit("1.9");
    repo.tag("v1.9.0");
    site.sync_ok();
    assert_applied(&site, "ranged", &v19, "1.9");
    assert_applied(&site, "tagged", &v1, "1.0");
}

#[test]
fn force_push_and_deleted_branch() {
    let repo = repo_with("1");
    repo.push_branch("edge");
    let first = repo.head();
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"edge\"", "deploy", "");
    site.sync_ok();
    assert_applied(&site, "app", &first, "1");

    // History rewritten: the new root commit is applied.
    repo.checkout_branch("edge");
    let rewritten = repo.force_push_new_root();
    repo.write("deploy/app.yaml", configmap("app", "rewritten").as_bytes());
    let rewritten_head = repo.commit("rewritten");
    assert_ne!(rewritten, first);
    site.sync_ok();
    assert_applied(&site, "app", &rewritten_head, "rewritten");

    // Branch deleted: an error naming it, and the last good stays.
    repo.delete_branch("edge");
    let out = site.sync_fails();
    assert!(out.contains("branch \"edge\" does not exist"), "{out}");
    assert_eq!(
        site.applied_revision("app").as_deref(),
        Some(rewritten_head.as_str())
    );
}
