//! Hostile repositories: entry names that `git fsck` flags and `git checkout` refuses (`..`, `.git`) never
//! reach a bundle (the commit is refused by name and the last good revision stays applied).

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{configmap, Site};
use outpost_tests::GitRepo;

/// Feeds `listing` (the `git ls-tree` format) to `git mktree` in the work clone; returns the tree id.
fn mktree(repo: &GitRepo, listing: &str) -> String {
    let mut child = repo
        .git()
        .arg("mktree")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(listing.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git mktree failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn hash_object(repo: &GitRepo, content: &str) -> String {
    let mut child = repo
        .git()
        .args(["hash-object", "-w", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(content.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Pushes a commit on top of the good one whose `deploy` folder holds `app.yaml` and a folder named `crafted`
/// with `evil.yaml` inside; returns the commit id.
fn push_crafted(repo: &GitRepo, crafted: &str) -> String {
    let app = hash_object(repo, &configmap("app", "good"));
    let evil = hash_object(repo, &configmap("evil", "planted"));
    let inner = mktree(repo, &format!("100644 blob {evil}\tevil.yaml\n"));
    let deploy = mktree(
        repo,
        &format!("040000 tree {inner}\t{crafted}\n100644 blob {app}\tapp.yaml\n"),
    );
    let root = mktree(repo, &format!("040000 tree {deploy}\tdeploy\n"));
    let commit = outpost_tests::support::run(repo.git().args([
        "commit-tree",
        &root,
        "-p",
        "HEAD",
        "-m",
        "crafted",
    ]));
    // Not checked out: git refuses to write such a tree to disk, which is the point.
    outpost_tests::support::run(repo.git().args(["update-ref", "HEAD", &commit]));
    repo.force_push();
    commit
}

fn assert_crafted_refused(crafted: &str) {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "good").as_bytes());
    let good = repo.commit("good");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    site.sync_ok();

    let bad = push_crafted(&repo, crafted);
    let out = site.sync_fails();
    assert!(
        out.contains(&bad) && out.contains(&format!("tree entry {crafted:?}")),
        "the refusal names the commit and the entry:\n{out}"
    );
    assert!(
        !site.applied("app").contains("evil"),
        "nothing planted is applied"
    );
    assert_eq!(site.applied_revision("app").as_deref(), Some(good.as_str()));
    let status = site.source_status("app");
    assert_eq!(status["state"], "Failed");
    assert_eq!(status["last_good"], good.as_str());
}

#[test]
fn a_dot_dot_folder_in_a_crafted_tree_is_refused() {
    assert_crafted_refused("..");
}

#[test]
fn a_dot_git_folder_in_a_crafted_tree_is_refused() {
    assert_crafted_refused(".git");
    assert_crafted_refused(".GIT");
}
