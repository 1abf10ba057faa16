//! [`GitRepo`]: a bare repository for the agent to pull from, plus a scratch clone that
//! tests write commits in, both driven by the real `git` CLI.
//!
//! The bare repository sits in a "serve directory" of its own (`<tmp>/srv/repo.git` by
//! default), so it can be handed straight to [`crate::GitDaemon::start`] or
//! [`crate::GitHttpServer::start`] with [`GitRepo::serve_dir`] and addressed by
//! [`GitRepo::name`]. Several repositories can share one serve directory through
//! [`GitRepo::new_in`].
//!
//! Commit and tag dates come from a per-repository counter instead of the clock: two commits
//! made within the same second with the same tree and parent would otherwise get the same
//! id, which would make "history was rewritten" tests flaky.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::support::{file_name_str, git, run};

/// 2023-11-14T22:13:20Z; every commit of a repository is one minute after the previous one.
const EPOCH: u64 = 1_700_000_000;

/// A bare repository with a working clone. Not `Sync` on purpose (it keeps the current
/// branch in a `RefCell`): one test owns it; servers read the bare directory from disk.
pub struct GitRepo {
    /// Owns the work clone and, unless [`GitRepo::new_in`] was used, the serve directory.
    dir: TempDir,
    bare: PathBuf,
    work: PathBuf,
    branch: RefCell<String>,
    clock: Cell<u64>,
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl GitRepo {
    /// A new, empty bare repository (default branch `main`) at `<tmp>/srv/repo.git`.
    pub fn new() -> GitRepo {
        let dir = tempfile::Builder::new()
            .prefix("outpost-repo-")
            .tempdir()
            .expect("create temp dir");
        let srv = dir.path().join("srv");
        std::fs::create_dir(&srv).expect("create serve dir");
        Self::create(dir, &srv, "repo.git")
    }

    /// A new, empty bare repository at `serve_dir/name` (e.g. `"app.git"`), so that several
    /// repositories can be served by one server. `serve_dir` must exist; the caller owns it.
    pub fn new_in(serve_dir: &Path, name: &str) -> GitRepo {
        let dir = tempfile::Builder::new()
            .prefix("outpost-repo-")
            .tempdir()
            .expect("create temp dir");
        Self::create(dir, serve_dir, name)
    }

    fn create(dir: TempDir, serve_dir: &Path, name: &str) -> GitRepo {
        let bare = serve_dir.join(name);
        assert!(!bare.exists(), "{} already exists", bare.display());
        run(git()
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare));
        for (key, value) in [
            // Shallow and by-id fetches ask for commits that no ref points at.
            ("uploadpack.allowAnySHA1InWant", "true"),
            ("uploadpack.allowReachableSHA1InWant", "true"),
            ("uploadpack.allowFilter", "true"),
            // The agent only ever reads; make sure the HTTP server refuses pushes.
            ("http.receivepack", "false"),
        ] {
            run(git().arg("-C").arg(&bare).args(["config", key, value]));
        }
        let work = dir.path().join("work");
        run(git().args(["init", "-q", "-b", "main"]).arg(&work));
        run(git()
            .arg("-C")
            .arg(&work)
            .args(["remote", "add", "origin"])
            .arg(&bare));
        GitRepo {
            dir,
            bare,
            work,
            branch: RefCell::new("main".to_string()),
            clock: Cell::new(EPOCH),
        }
    }

    /// The bare repository's directory.
    pub fn bare_path(&self) -> &Path {
        &self.bare
    }

    /// The scratch working clone (tests may run their own `git` commands in it).
    pub fn work_path(&self) -> &Path {
        &self.work
    }

    /// The directory that holds the bare repository: the base dir to serve.
    pub fn serve_dir(&self) -> &Path {
        self.bare.parent().expect("bare repo has a parent")
    }

    /// The bare repository's directory name inside [`GitRepo::serve_dir`], e.g. `repo.git`.
    pub fn name(&self) -> &str {
        file_name_str(&self.bare)
    }

    /// `file:///abs/path/to/repo.git`.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// The branch that [`GitRepo::commit`] pushes to (initially `main`).
    pub fn branch(&self) -> String {
        self.branch.borrow().clone()
    }

    /// The full id of the work clone's `HEAD`.
    pub fn head(&self) -> String {
        run(self.git().args(["rev-parse", "HEAD"]))
    }

    /// Writes `contents` to `rel_path` in the work clone, creating parent directories.
    pub fn write(&self, rel_path: &str, contents: &[u8]) {
        let path = self.work_file(rel_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        // A symlink at this path would be followed by fs::write; replace it instead.
        if path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            std::fs::remove_file(&path).expect("remove old symlink");
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Removes a file, symlink or directory (recursively) from the work clone.
    pub fn remove(&self, rel_path: &str) {
        let path = self.work_file(rel_path);
        let meta = path
            .symlink_metadata()
            .unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
        if meta.is_dir() {
            std::fs::remove_dir_all(&path).expect("remove dir");
        } else {
            std::fs::remove_file(&path).expect("remove file");
        }
    }

    /// Creates a symlink at `rel_path` pointing at `target` (stored verbatim, so relative,
    /// absolute and escaping targets like `../../etc/passwd` can all be tested).
    pub fn symlink(&self, rel_path: &str, target: impl AsRef<Path>) {
        let path = self.work_file(rel_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        if path.symlink_metadata().is_ok() {
            self.remove(rel_path);
        }
        std::os::unix::fs::symlink(target.as_ref(), &path)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
    }

    /// Commits every change in the work clone (an empty commit if nothing changed), pushes it
    /// to the current branch of the bare repository and returns the full commit id.
    pub fn commit(&self, msg: &str) -> String {
        run(self.git().args(["add", "-A"]));
        run(self
            .git()
            .args(["commit", "-q", "--allow-empty", "--no-verify", "-m", msg]));
        let id = self.head();
        self.push_head_to(&format!("refs/heads/{}", self.branch()), false);
        id
    }

    /// Creates (or moves) branch `name` in the bare repository at the work clone's `HEAD`;
    /// returns that commit id. The work clone stays on its current branch.
    pub fn push_branch(&self, name: &str) -> String {
        self.push_head_to(&format!("refs/heads/{name}"), true);
        self.head()
    }

    /// Switches the work clone to branch `name` (created at the current `HEAD` if it does
    /// not exist yet); later [`GitRepo::commit`]s push there.
    pub fn checkout_branch(&self, name: &str) {
        run(self.git().args(["checkout", "-q", "-B", name]));
        *self.branch.borrow_mut() = name.to_string();
    }

    /// Points the bare repository's `HEAD` (its default branch) at `refs/heads/name`.
    pub fn set_default_branch(&self, name: &str) {
        run(git().arg("-C").arg(&self.bare).args([
            "symbolic-ref",
            "HEAD",
            &format!("refs/heads/{name}"),
        ]));
    }

    /// A lightweight tag `name` at `HEAD`, pushed; returns the commit id.
    pub fn tag(&self, name: &str) -> String {
        run(self.git().args(["tag", "-f", name]));
        self.push_head_to_tag(name);
        self.head()
    }

    /// An annotated tag `name` with message `msg` at `HEAD`, pushed; returns the id of the
    /// commit it points to (see [`GitRepo::tag_object_id`] for the tag object itself).
    pub fn annotated_tag(&self, name: &str, msg: &str) -> String {
        let date = self.tick();
        run(self
            .git()
            .env("GIT_COMMITTER_DATE", &date)
            .args(["tag", "-f", "-a", name, "-m", msg]));
        self.push_head_to_tag(name);
        self.head()
    }

    /// The id that `refs/tags/name` holds in the bare repository (the tag object for an
    /// annotated tag, the commit for a lightweight one).
    pub fn tag_object_id(&self, name: &str) -> String {
        run(git()
            .arg("-C")
            .arg(&self.bare)
            .args(["rev-parse", &format!("refs/tags/{name}")]))
    }

    /// Deletes branch `name` from the bare repository.
    pub fn delete_branch(&self, name: &str) {
        run(git().arg("-C").arg(&self.bare).args([
            "update-ref",
            "-d",
            &format!("refs/heads/{name}"),
        ]));
    }

    /// Deletes tag `name` from the bare repository.
    pub fn delete_tag(&self, name: &str) {
        run(git().arg("-C").arg(&self.bare).args([
            "update-ref",
            "-d",
            &format!("refs/tags/{name}"),
        ]));
    }

    /// Rewrites history: replaces the current branch with a single parentless commit that has
    /// the current tree, force-pushes it and returns its id. The old commits become
    /// unreachable from the branch (a fetcher must cope with a non-fast-forward).
    pub fn force_push_new_root(&self) -> String {
        let date = self.tick();
        let id = run(self
            .git()
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["commit-tree", "HEAD^{tree}", "-m", "new root"]));
        self.reset_hard(&id);
        self.force_push()
    }

    /// Moves the work clone's current branch to `commit` (working tree included).
    pub fn reset_hard(&self, commit: &str) {
        run(self.git().args(["reset", "-q", "--hard", commit]));
    }

    /// Force-pushes the work clone's `HEAD` to the current branch; returns the commit id.
    pub fn force_push(&self) -> String {
        self.push_head_to(&format!("refs/heads/{}", self.branch()), true);
        self.head()
    }

    /// A `git` command running in the work clone, with this repository's clock.
    pub fn git(&self) -> Command {
        let date = self.tick();
        let mut cmd = git();
        cmd.arg("-C")
            .arg(&self.work)
            .args([
                "-c",
                "protocol.file.allow=always",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date);
        cmd
    }

    fn push_head_to(&self, refname: &str, force: bool) {
        let refspec = format!("{}HEAD:{refname}", if force { "+" } else { "" });
        run(self.git().args(["push", "-q", "origin", &refspec]));
    }

    fn push_head_to_tag(&self, name: &str) {
        let refspec = format!("+refs/tags/{name}:refs/tags/{name}");
        run(self.git().args(["push", "-q", "origin", &refspec]));
    }

    fn work_file(&self, rel: &str) -> PathBuf {
        assert!(Path::new(rel).is_relative(), "{rel} must be relative");
        self.work.join(rel)
    }

    fn tick(&self) -> String {
        let t = self.clock.get() + 60;
        self.clock.set(t);
        format!("@{t} +0000")
    }

    /// The temp directory that owns the work clone (and the default serve directory).
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls_remote(url: &str) -> String {
        run(git().args(["ls-remote", url]))
    }

    #[test]
    fn commit_pushes_to_bare_main_and_returns_full_id() {
        let repo = GitRepo::new();
        repo.write("deploy/app.yaml", b"replicas: 1\n");
        let id = repo.commit("first");
        assert_eq!(id.len(), 40, "full sha1 id: {id}");
        let refs = ls_remote(&repo.file_url());
        assert!(refs.contains(&format!("{id}\tHEAD")), "{refs}");
        assert!(refs.contains(&format!("{id}\trefs/heads/main")), "{refs}");
        let shown = run(git()
            .arg("-C")
            .arg(repo.bare_path())
            .args(["show", "main:deploy/app.yaml"]));
        assert_eq!(shown, "replicas: 1");
        let want = run(git()
            .arg("-C")
            .arg(repo.bare_path())
            .args(["config", "uploadpack.allowAnySHA1InWant"]));
        assert_eq!(want, "true");
    }

    #[test]
    fn remove_symlink_and_identical_commits_get_distinct_ids() {
        let repo = GitRepo::new();
        repo.write("a.txt", b"a");
        repo.symlink("link", "a.txt");
        let first = repo.commit("one");
        let tree = run(git()
            .arg("-C")
            .arg(repo.bare_path())
            .args(["ls-tree", "main"]));
        assert!(
            tree.contains("120000 blob"),
            "symlink stored as such: {tree}"
        );
        repo.remove("link");
        repo.remove("a.txt");
        let second = repo.commit("two");
        let empty = repo.commit("two");
        assert_ne!(
            second, empty,
            "the clock separates otherwise identical commits"
        );
        let tree = run(git()
            .arg("-C")
            .arg(repo.bare_path())
            .args(["ls-tree", &second]));
        assert!(tree.is_empty(), "files removed: {tree}");
        assert_ne!(first, second);
    }

    #[test]
    fn tags_branches_and_history_rewrite() {
        let repo = GitRepo::new();
        repo.write("f", b"1");
        let c1 = repo.commit("c1");
        assert_eq!(repo.tag("v1"), c1);
        assert_eq!(repo.annotated_tag("v1-ann", "release 1"), c1);
        assert_ne!(
            repo.tag_object_id("v1-ann"),
            c1,
            "annotated tag is its own object"
        );
        assert_eq!(repo.push_branch("feature"), c1);
        let refs = ls_remote(&repo.file_url());
        assert!(refs.contains(&format!("{c1}\trefs/tags/v1\n")), "{refs}");
        assert!(
            refs.contains(&format!("{c1}\trefs/tags/v1-ann^{{}}")),
            "{refs}"
        );
        assert!(
            refs.contains(&format!("{c1}\trefs/heads/feature")),
            "{refs}"
        );

        repo.delete_branch("feature");
        assert!(!ls_remote(&repo.file_url()).contains("feature"));

        repo.write("f", b"2");
        let c2 = repo.commit("c2");
        let root = repo.force_push_new_root();
        assert_ne!(root, c2);
        let parents = run(git()
            .arg("-C")
            .arg(repo.bare_path())
            .args(["rev-list", "--count", "main"]));
        assert_eq!(parents, "1", "main is a single root commit now");

        repo.reset_hard(&c1);
        assert_eq!(repo.force_push(), c1);
        assert!(ls_remote(&repo.file_url()).contains(&format!("{c1}\trefs/heads/main")));
    }

    #[test]
    fn several_repos_share_a_serve_dir_and_branches_switch() {
        let srv = tempfile::tempdir().unwrap();
        let a = GitRepo::new_in(srv.path(), "a.git");
        let b = GitRepo::new_in(srv.path(), "b.git");
        assert_eq!(a.serve_dir(), b.serve_dir());
        assert_eq!(b.name(), "b.git");
        a.commit("on main");
        a.checkout_branch("release");
        let r = a.commit("on release");
        a.set_default_branch("release");
        let refs = ls_remote(&a.file_url());
        assert!(refs.contains(&format!("{r}\tHEAD")), "{refs}");
        assert!(refs.contains(&format!("{r}\trefs/heads/release")), "{refs}");
    }
}
