//! Hostile repositories: entry names that `git fsck` flags and `git checkout` refuses (`..`, `.git`) never
//! reach a bundle (the commit is refused by name and the last good revision stays applied), and a file name
//! made of terminal control sequences reaches the operator's terminal only as visible escapes.

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

/// Bytes a terminal acts on: ESC, BEL, CR and the other C0 controls except the newline ending each line.
fn control_bytes(text: &[u8]) -> Vec<u8> {
    text.iter()
        .copied()
        .filter(|b| (*b < 0x20 && *b != b'\n') || *b == 0x7f)
        .collect()
}

#[test]
fn a_file_name_of_control_sequences_is_printed_escaped() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "good").as_bytes());
    repo.commit("good");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    site.sync_ok();

    // Retitles the terminal, clears it, and returns the cursor to overwrite the line with a fake "Ready".
    let name = "deploy/\u{1b}]0;owned\u{7}\u{1b}[2J\rapp Ready\n\u{9b}31m.yaml";
    repo.write(
        name,
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n",
    );
    repo.commit("bad");
    let sync = site.run(&["sync"]);
    assert!(!sync.status.success());
    let status = site.run(&["status"]);
    for (what, out) in [
        ("sync stdout", &sync.stdout),
        ("sync stderr", &sync.stderr),
        ("status stdout", &status.stdout),
        ("status stderr", &status.stderr),
    ] {
        assert_eq!(
            control_bytes(out),
            b"",
            "{what} holds control bytes:\n{}",
            String::from_utf8_lossy(out)
        );
        let text = String::from_utf8_lossy(out);
        assert!(!text.contains('\u{9b}'), "{what} holds a C1 CSI: {text}");
    }
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.contains("\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\rapp Ready\\n\\u{9b}31m.yaml"),
        "the name is shown, escaped:\n{table}"
    );
    // The JSON form keeps the real name, JSON-escaped, for programs.
    let json = site.source_status("app");
    assert!(json["last_error"]
        .as_str()
        .unwrap()
        .contains("\u{1b}]0;owned"));
}
