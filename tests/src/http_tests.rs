//! Tests for [`super::GitHttpServer`] with the real `git` client (and one raw request).

use super::*;
use crate::support::{git, output, run};
use crate::GitRepo;
use std::io::{Read, Write};

fn repo_with_history() -> (GitRepo, String) {
    let repo = GitRepo::new();
    repo.write("manifests/app.yaml", b"image: app:v1\n");
    repo.commit("v1");
    repo.write("manifests/app.yaml", b"image: app:v2\n");
    let id = repo.commit("v2");
    (repo, id)
}

fn shallow_clone(cmd: &mut std::process::Command, url: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("clone");
    run(cmd.args(["clone", "-q", "--depth", "1", url]).arg(&dest));
    let head = run(git().arg("-C").arg(&dest).args(["rev-parse", "HEAD"]));
    (dir, head)
}

#[test]
fn plain_http_ls_remote_clone_and_counters() {
    let (repo, id) = repo_with_history();
    let server = GitHttpServer::start(repo.serve_dir());
    let url = server.url_for(repo.name());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let refs = run(git().args(["ls-remote", &url]));
    assert!(refs.contains(&format!("{id}\trefs/heads/main")), "{refs}");

    let requests = server.requests();
    let first = &requests[0];
    assert_eq!(first.method, "GET");
    assert_eq!(
        first.path_and_query,
        "/repo.git/info/refs?service=git-upload-pack"
    );
    assert_eq!(first.status, 200);
    assert_eq!(
        first.git_protocol.as_deref(),
        Some("version=2"),
        "git 2.26+ asks for v2"
    );
    assert!(first.response_bytes > 0);

    server.reset_counters();
    assert!(server.requests().is_empty());
    let (dir, head) = shallow_clone(&mut git(), &url);
    assert_eq!(head, id);
    let body = std::fs::read_to_string(dir.path().join("clone/manifests/app.yaml")).unwrap();
    assert_eq!(body, "image: app:v2\n");
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path_and_query == "/repo.git/git-upload-pack"),
        "{requests:?}"
    );
    assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");
    let post_bytes: u64 = requests
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.request_bytes)
        .sum();
    assert!(post_bytes > 0, "request bodies are counted");
    assert_eq!(
        server.total_response_bytes(),
        requests.iter().map(|r| r.response_bytes).sum::<u64>()
    );
    // The pack holds at least the blob's content, so the total cannot be tiny.
    assert!(server.total_response_bytes() > 200, "{requests:?}");
}

/// Protocol v0 makes git gzip its upload-pack request; the backend only understands it if
/// `HTTP_CONTENT_ENCODING` is passed through. Many refs make the request big enough to gzip.
#[test]
fn protocol_v0_gzip_request_bodies_are_inflated() {
    let repo = GitRepo::new();
    let mut ids = Vec::new();
    for i in 0..40 {
        repo.write("f", format!("{i}").as_bytes());
        ids.push(repo.commit(&format!("c{i}")));
        repo.push_branch(&format!("branch-{i}"));
    }
    let server = GitHttpServer::start(repo.serve_dir());
    let dir = tempfile::tempdir().unwrap();
    run(git()
        .args(["-c", "protocol.version=0", "clone", "-q", "--mirror"])
        .arg(server.url_for(repo.name()))
        .arg(dir.path().join("m.git")));
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.method == "POST"
            && r.content_encoding.as_deref() == Some("gzip")
            && r.status == 200),
        "expected a gzip POST: {requests:?}"
    );
    let count = run(git()
        .arg("-C")
        .arg(dir.path().join("m.git"))
        .args(["rev-list", "--count", "--all"]));
    assert_eq!(count, ids.len().to_string());
}

#[test]
fn https_with_test_ca_and_rejects_untrusted() {
    let (repo, id) = repo_with_history();
    let server = GitHttpServer::builder(repo.serve_dir()).tls(true).start();
    let url = server.url_for(repo.name());
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(server.ca_pem().contains("BEGIN CERTIFICATE"));
    let dir = tempfile::tempdir().unwrap();
    let ca = server.write_ca(dir.path());

    let refs = run(git().env("GIT_SSL_CAINFO", &ca).args(["ls-remote", &url]));
    assert!(refs.contains(&id), "{refs}");
    let (_clone, head) = shallow_clone(git().env("GIT_SSL_CAINFO", &ca), &url);
    assert_eq!(head, id);

    // A CA the server did not use must fail verification, and the handshake never reaches
    // HTTP, so nothing new is recorded.
    server.reset_counters();
    let other = TestCa::new().write_ca(tempfile::tempdir().unwrap().path());
    let out = output(
        git()
            .env("GIT_SSL_CAINFO", &other)
            .args(["ls-remote", &url]),
    );
    assert!(!out.status.success(), "untrusted CA must fail");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn bearer_token_required() {
    let (repo, id) = repo_with_history();
    let server = GitHttpServer::builder(repo.serve_dir())
        .require_bearer("s3cret")
        .start();
    let url = server.url_for(repo.name());

    let ok = run(git()
        .args(["-c", "http.extraHeader=Authorization: Bearer s3cret"])
        .args(["ls-remote", &url]));
    assert!(ok.contains(&id), "{ok}");
    let (_clone, head) = shallow_clone(
        git().args(["-c", "http.extraHeader=Authorization: Bearer s3cret"]),
        &url,
    );
    assert_eq!(head, id);
    assert!(server.requests().iter().all(|r| r.status == 200));

    for extra in [
        vec![],
        vec!["-c", "http.extraHeader=Authorization: Bearer wrong"],
    ] {
        server.reset_counters();
        let out = output(git().args(&extra).args(["ls-remote", &url]));
        assert!(!out.status.success(), "must fail with {extra:?}");
        let records = server.requests();
        assert_eq!(records[0].status, 401, "{records:?}");
        assert!(records.iter().all(|r| r.status == 401), "{records:?}");
    }
}

#[test]
fn bearer_challenge_header_and_raw_v2_advertisement() {
    let (repo, _) = repo_with_history();
    let server = GitHttpServer::builder(repo.serve_dir())
        .require_bearer("tok")
        .start();
    let raw = |auth: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        write!(
            s,
            "GET /repo.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\
             Git-Protocol: version=2\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    let denied = raw("");
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert!(denied.contains("www-authenticate: Bearer"), "{denied}");
    let ok = raw("Authorization: Bearer tok\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.contains("application/x-git-upload-pack-advertisement"),
        "CGI headers are passed through: {ok}"
    );
    assert!(
        ok.contains("version 2"),
        "GIT_PROTOCOL reached the backend: {ok}"
    );
}

#[test]
fn basic_auth_required() {
    let (repo, id) = repo_with_history();
    let server = GitHttpServer::builder(repo.serve_dir())
        .require_basic("alice", "pa55")
        .start();
    let url = server.url_for(repo.name());
    let with_creds = url.replace("http://", "http://alice:pa55@");
    let refs = run(git().args(["ls-remote", &with_creds]));
    assert!(refs.contains(&id), "{refs}");
    let records = server.requests();
    assert_eq!(
        records[0].status, 401,
        "git sends credentials after the challenge"
    );
    assert_eq!(records.last().unwrap().status, 200, "{records:?}");

    server.reset_counters();
    let wrong = url.replace("http://", "http://alice:nope@");
    let out = output(git().args(["ls-remote", &wrong]));
    assert!(!out.status.success());
    assert!(server.requests().iter().all(|r| r.status == 401));
    let out = output(git().args(["ls-remote", &url]));
    assert!(!out.status.success(), "no credentials, no prompt");
}

#[test]
fn missing_repo_is_404_and_push_is_refused() {
    let (repo, _) = repo_with_history();
    let server = GitHttpServer::start(repo.serve_dir());
    let out = output(git().args(["ls-remote", &server.url_for("nope.git")]));
    assert!(!out.status.success());
    assert_eq!(server.requests()[0].status, 404, "{:?}", server.requests());

    let out = output(git().arg("-C").arg(repo.work_path()).args([
        "push",
        &server.url_for(repo.name()),
        "HEAD:refs/heads/x",
    ]));
    assert!(
        !out.status.success(),
        "http.receivepack=false refuses pushes"
    );
    assert!(
        server.requests().iter().any(|r| r.status == 403),
        "{:?}",
        server.requests()
    );
}

#[test]
fn stop_and_start_again_on_same_port_keeps_counters() {
    let (repo, id) = repo_with_history();
    let mut server = GitHttpServer::start(repo.serve_dir());
    let url = server.url_for(repo.name());
    run(git().args(["ls-remote", &url]));
    let before = server.requests().len();
    assert!(before >= 1);

    server.stop();
    assert!(!server.is_running());
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port())).is_err());
    assert!(!output(git().args(["ls-remote", &url])).status.success());

    server.start_again();
    assert_eq!(server.url_for(repo.name()), url);
    let refs = run(git().args(["ls-remote", &url]));
    assert!(refs.contains(&id));
    assert!(server.requests().len() > before);
}

/// The fixture must also work from async tests: start, use and drop inside a tokio runtime.
#[tokio::test]
async fn usable_and_droppable_from_async_tests() {
    let (repo, id) = repo_with_history();
    let server = GitHttpServer::builder(repo.serve_dir()).tls(true).start();
    let url = server.url_for(repo.name());
    let dir = tempfile::tempdir().unwrap();
    let ca = server.write_ca(dir.path());
    let mut cmd = tokio::process::Command::from(git());
    let out = cmd
        .env("GIT_SSL_CAINFO", &ca)
        .args(["ls-remote", &url])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    drop(server);
}
