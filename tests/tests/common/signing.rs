//! Signing keys made by the real tools (`ssh-keygen`, `gpg`) and signed commits and tags made by the real `git`,
//! for the `[source.verify]` suite.

use std::path::{Path, PathBuf};
use std::process::Command;

use outpost_tests::GitRepo;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An SSH key pair made by `ssh-keygen`, no passphrase.
pub struct SshKey {
    pub private: PathBuf,
    /// The `.pub` line: `keytype base64 comment`.
    pub public_line: String,
    /// `SHA256:...` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

impl SshKey {
    /// `kind` is `ed25519`, `ecdsa` (P-256) or `rsa` (3072 bits).
    pub fn generate(dir: &Path, name: &str, kind: &str) -> SshKey {
        let private = dir.join(name);
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
            .arg(&private);
        if kind == "ecdsa" {
            cmd.args(["-b", "256"]);
        }
        run(&mut cmd);
        let public_line = std::fs::read_to_string(format!("{}.pub", private.display()))
            .unwrap()
            .trim()
            .to_string();
        let listed = run(Command::new("ssh-keygen")
            .arg("-lf")
            .arg(format!("{}.pub", private.display())));
        let fingerprint = listed.split_whitespace().nth(1).unwrap().to_string();
        assert!(fingerprint.starts_with("SHA256:"), "{listed}");
        SshKey {
            private,
            public_line,
            fingerprint,
        }
    }

    /// The allowed_signers line for this key.
    pub fn allowed_line(&self, principal: &str) -> String {
        format!("{principal} {}\n", self.public_line)
    }

    /// `git -c` settings that make `-S` / `tag -s` sign with this key.
    pub fn git_config(&self) -> Vec<String> {
        vec![
            "-c".into(),
            "gpg.format=ssh".into(),
            "-c".into(),
            format!("user.signingKey={}", self.private.display()),
        ]
    }
}

/// A throwaway GnuPG home; its agent is stopped when dropped.
pub struct Gpg {
    pub home: tempfile::TempDir,
}

pub fn gpg_available() -> bool {
    Command::new("gpg")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Gpg {
    pub fn new() -> Gpg {
        // Under /tmp with a short name: gpg-agent's socket path must stay short.
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .unwrap();
        Gpg { home }
    }

    pub fn gpg(&self, faked_time: Option<&str>) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        if let Some(t) = faked_time {
            cmd.args(["--faked-system-time", t]);
        }
        cmd
    }

    /// A new ed25519 signing key for `uid`, made at `faked_time` when given; returns its fingerprint.
    pub fn generate(&self, uid: &str, faked_time: Option<&str>) -> String {
        run(self
            .gpg(faked_time)
            .args(["--quick-gen-key", uid, "ed25519", "sign", "never"]));
        let listed = run(self.gpg(None).args(["--with-colons", "--list-keys", uid]));
        listed
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .expect("a fingerprint")
    }

    /// The armored public keys of `fingerprints`, as an operator would export them.
    pub fn export(&self, fingerprints: &[&str]) -> String {
        run(self
            .gpg(None)
            .arg("--armor")
            .arg("--export")
            .args(fingerprints))
    }

    /// Sets `fpr` to expire one day after `faked_time`, with a self-signature made at that time.
    pub fn set_expiry(&self, fpr: &str, faked_time: &str) {
        run(self
            .gpg(Some(faked_time))
            .args(["--quick-set-expire", fpr, "1d"]));
    }

    /// Imports the revocation certificate gpg wrote when it made the key.
    pub fn revoke(&self, fpr: &str) {
        let path = self.home.path().join(format!("openpgp-revocs.d/{fpr}.rev"));
        let cert = std::fs::read_to_string(&path).unwrap();
        // gpg puts a ':' before the armor so that the certificate is not imported by accident.
        let armored = cert.replace(
            ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        );
        let file = self.home.path().join("revocation.asc");
        std::fs::write(&file, armored).unwrap();
        run(self.gpg(None).arg("--import").arg(&file));
    }

    /// `git -c` settings that sign with `fpr` through a wrapper that passes the batch options (and a faked clock).
    pub fn git_config(&self, fpr: &str, faked_time: Option<&str>) -> Vec<String> {
        let script = self
            .home
            .path()
            .join(format!("gpg-{}.sh", faked_time.unwrap_or("now")));
        let faked = faked_time
            .map(|t| format!("--faked-system-time {t} "))
            .unwrap_or_default();
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec gpg --homedir '{}' --batch --no-tty --pinentry-mode loopback --passphrase '' {faked}\"$@\"\n",
                self.home.path().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        vec![
            "-c".into(),
            "gpg.format=openpgp".into(),
            "-c".into(),
            format!("gpg.program={}", script.display()),
            "-c".into(),
            format!("user.signingKey={fpr}"),
        ]
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .output();
    }
}

/// Commits the work clone's changes signed with `sign` (git `-c` settings; empty for an unsigned commit), pushes
/// it to the current branch and returns its id.
pub fn commit_signed(repo: &GitRepo, sign: &[String], msg: &str) -> String {
    run(repo.git().args(["add", "-A"]));
    let mut cmd = repo.git();
    cmd.args(sign)
        .args(["commit", "-q", "--allow-empty", "-m", msg]);
    if !sign.is_empty() {
        cmd.arg("-S");
    }
    run(&mut cmd);
    repo.force_push()
}

/// A signed annotated tag `name` at the work clone's HEAD, pushed; returns the tag object id.
pub fn tag_signed(repo: &GitRepo, sign: &[String], name: &str) -> String {
    run(repo
        .git()
        .args(sign)
        .args(["tag", "-f", "-s", name, "-m", name]));
    let spec = format!("+refs/tags/{name}:refs/tags/{name}");
    run(repo.git().args(["push", "-q", "origin", &spec]));
    repo.tag_object_id(name)
}

/// Replaces the branch head with a copy of it whose message was changed but whose `gpgsig` header was kept: a
/// signature over different content. Returns the new commit id.
pub fn graft_signature(repo: &GitRepo, new_message: &str) -> String {
    let raw = run(repo.git().args(["cat-file", "commit", "HEAD"]));
    let (headers, _message) = raw.split_once("\n\n").expect("a commit has a message");
    assert!(
        headers.contains("gpgsig "),
        "the head is not signed:\n{raw}"
    );
    let forged = format!("{headers}\n\n{new_message}\n");
    let path = repo.temp_dir().join("forged-commit");
    std::fs::write(&path, forged).unwrap();
    let id = run(repo
        .git()
        .args(["hash-object", "-t", "commit", "-w"])
        .arg(&path));
    repo.reset_hard(&id);
    repo.force_push()
}
