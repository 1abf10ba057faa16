//! [`SshServer`]: a real OpenSSH `sshd` on a loopback port, for `ssh://` git URLs.
//!
//! Everything it needs is generated into its temp dir: the config, an ed25519 host key, a
//! client key pair whose public half is the only authorized key, a `known_hosts` that trusts
//! the host key and one that pins a *different* key (for host-key-mismatch tests).
//!
//! How `git-upload-pack` is found: git's ssh transport runs `git-upload-pack '/abs/repo'`
//! through the account's login shell, with the `PATH` that sshd sets up, which is not the
//! test process's `PATH` (it could miss the `git` the tests use, or find an older one). The
//! config therefore sets `SetEnv PATH=...` with the directory of the `git` on the test's
//! `PATH` and `git --exec-path` first; sshd applies `SetEnv` after its default `PATH`, so the
//! server side always runs the same git as the client. `AcceptEnv GIT_PROTOCOL` lets the
//! client ask for protocol v2, as it does over the other transports.
//!
//! sshd refuses to start unless its privilege separation directory (`/run/sshd`) exists, so
//! it is created when missing. Key files get mode 0600 (ssh refuses readable private keys).

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::support::{
    find_tool, free_port, git_exec_path, kill_group, read_log, require_tool, run, wait_for_port,
    StartError,
};

/// A running `sshd -D -e` that accepts the generated client key for the current user.
pub struct SshServer {
    dir: TempDir,
    port: u16,
    user: String,
    child: Option<Child>,
}

impl SshServer {
    /// Generates keys and config, starts sshd on a free loopback port and waits until it
    /// answers with an SSH banner.
    pub fn start() -> SshServer {
        let sshd = require_tool("sshd", "apt-get install -y openssh-server");
        require_tool("ssh", "apt-get install -y openssh-client");
        require_tool("ssh-keygen", "apt-get install -y openssh-client");
        ensure_privsep_dir();
        let dir = tempfile::Builder::new()
            .prefix("outpost-sshd-")
            .tempdir()
            .expect("create temp dir");
        let d = dir.path();
        for key in ["host_ed25519", "client_ed25519", "wrong_host_ed25519"] {
            keygen(&d.join(key));
        }
        let client_pub = std::fs::read_to_string(d.join("client_ed25519.pub")).unwrap();
        std::fs::write(d.join("authorized_keys"), client_pub).unwrap();
        let user = current_user();
        let mut server = SshServer {
            dir,
            port: 0,
            user,
            child: None,
        };
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            server.write_config_and_known_hosts();
            match server.spawn(&sshd) {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("sshd did not start: {last}");
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user the client key logs in as (the user running the tests).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client's private key (mode 0600).
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// A known_hosts file with `[127.0.0.1]:PORT` and the server's real host key.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A known_hosts file pinning `[127.0.0.1]:PORT` to a *different* key: connecting with it
    /// and `StrictHostKeyChecking=yes` must fail.
    pub fn wrong_known_hosts_path(&self) -> PathBuf {
        self.dir.path().join("wrong_known_hosts")
    }

    /// The server's public host key line (`ssh-ed25519 AAAA...`).
    pub fn host_public_key(&self) -> String {
        public_key_line(&self.dir.path().join("host_ed25519.pub"))
    }

    /// `ssh://USER@127.0.0.1:PORT/abs/path` for a repository at absolute path `repo`.
    pub fn url_for(&self, repo: impl AsRef<Path>) -> String {
        let repo = repo.as_ref();
        assert!(repo.is_absolute(), "{} must be absolute", repo.display());
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }

    /// A `GIT_SSH_COMMAND` that logs in with the client key and checks the host key against
    /// `known_hosts` strictly, ignoring the user's ssh config and agent.
    pub fn git_ssh_command(&self, known_hosts: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes \
             -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
             -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -p {}",
            self.client_key_path().display(),
            known_hosts.display(),
            self.port
        )
    }

    /// sshd's log (its `-e` stderr).
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join("sshd.log"))
    }

    fn write_config_and_known_hosts(&self) {
        let d = self.dir.path();
        let host = format!("[127.0.0.1]:{}", self.port);
        std::fs::write(
            d.join("known_hosts"),
            format!("{host} {}\n", public_key_line(&d.join("host_ed25519.pub"))),
        )
        .unwrap();
        std::fs::write(
            d.join("wrong_known_hosts"),
            format!(
                "{host} {}\n",
                public_key_line(&d.join("wrong_host_ed25519.pub"))
            ),
        )
        .unwrap();

        let mut config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {dir}/host_ed25519\n\
             PidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             StrictModes no\n\
             UsePAM no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             AllowUsers {user}\n\
             AcceptEnv GIT_PROTOCOL\n\
             SetEnv PATH={path}\n\
             LogLevel VERBOSE\n",
            port = self.port,
            dir = d.display(),
            user = self.user,
            path = server_path(),
        );
        if is_root() {
            config.push_str("PermitRootLogin prohibit-password\n");
        }
        std::fs::write(d.join("sshd_config"), config).unwrap();
    }

    fn spawn(&mut self, sshd: &Path) -> Result<(), String> {
        let d = self.dir.path();
        let log = File::options()
            .create(true)
            .append(true)
            .open(d.join("sshd.log"))
            .expect("open sshd log");
        // sshd wants to be started by absolute path (it re-executes itself).
        let mut cmd = Command::new(sshd);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", sshd.display()));
        let result = wait_for_port(self.port, &mut child, Duration::from_secs(10))
            .and_then(|()| wait_for_banner(self.port));
        match result {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                kill_group(&mut child);
                Err(match e {
                    StartError::Exited(status) => format!("sshd exited {status}:\n{}", self.log()),
                    StartError::Timeout => {
                        format!("port {} never answered:\n{}", self.port, self.log())
                    }
                })
            }
        }
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

/// The PATH for ssh sessions: the test's `git` and its exec path first, then the usual.
fn server_path() -> String {
    let mut dirs = Vec::new();
    if let Some(git) = find_tool("git") {
        dirs.push(git.parent().unwrap().display().to_string());
    }
    dirs.push(git_exec_path().display().to_string());
    for d in ["/usr/local/bin", "/usr/bin", "/bin"] {
        if !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_string());
        }
    }
    dirs.join(":")
}

/// Waits for the `SSH-2.0-` banner: the port may accept (backlog) before sshd is ready to
/// speak, and a wrong program on the port would not say it.
fn wait_for_banner(port: u16) -> Result<(), StartError> {
    use std::io::Read;
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 8];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-2.0") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(StartError::Timeout)
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "outpost-test", "-f"])
        .arg(path));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `ssh-ed25519 AAAA...` without the comment.
fn public_key_line(pub_file: &Path) -> String {
    let text = std::fs::read_to_string(pub_file).unwrap();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            panic!(
                "sshd needs {} (privilege separation) and it cannot be created: {e}",
                dir.display()
            );
        }
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn current_user() -> String {
    let out = run(Command::new("id").arg("-un"));
    if out.is_empty() {
        std::env::var("USER").expect("cannot tell the current user name")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::{git, output};
    use crate::GitRepo;

    #[test]
    fn ls_remote_and_shallow_clone_over_ssh() {
        let repo = GitRepo::new();
        repo.write("app/values.yaml", b"tag: v7\n");
        let id = repo.commit("deploy v7");
        let ssh = SshServer::start();
        let url = ssh.url_for(repo.bare_path());
        assert!(
            url.starts_with(&format!("ssh://{}@127.0.0.1:", ssh.user())),
            "{url}"
        );
        let ssh_cmd = ssh.git_ssh_command(&ssh.known_hosts_path());

        let refs = run(git()
            .env("GIT_SSH_COMMAND", &ssh_cmd)
            .args(["ls-remote", &url]));
        assert!(
            refs.contains(&format!("{id}\trefs/heads/main")),
            "{refs}\n{}",
            ssh.log()
        );

        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("c");
        run(git()
            .env("GIT_SSH_COMMAND", &ssh_cmd)
            .args(["clone", "-q", "--depth", "1", &url])
            .arg(&dest));
        let body = std::fs::read_to_string(dest.join("app/values.yaml")).unwrap();
        assert_eq!(body, "tag: v7\n");
        assert!(ssh.log().contains("Accepted publickey"), "{}", ssh.log());
    }

    #[test]
    fn wrong_host_key_and_unknown_client_key_are_rejected() {
        let repo = GitRepo::new();
        repo.commit("x");
        let ssh = SshServer::start();
        let url = ssh.url_for(repo.bare_path());

        let wrong = ssh.git_ssh_command(&ssh.wrong_known_hosts_path());
        let out = output(
            git()
                .env("GIT_SSH_COMMAND", &wrong)
                .args(["ls-remote", &url]),
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("HOST IDENTIFICATION HAS CHANGED"),
            "{stderr}"
        );

        let stranger = tempfile::tempdir().unwrap();
        let key = stranger.path().join("k");
        keygen(&key);
        let cmd = ssh.git_ssh_command(&ssh.known_hosts_path()).replace(
            &ssh.client_key_path().display().to_string(),
            &key.display().to_string(),
        );
        let out = output(git().env("GIT_SSH_COMMAND", &cmd).args(["ls-remote", &url]));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("Permission denied"), "{stderr}");
        assert!(ssh.host_public_key().starts_with("ssh-ed25519 "));
    }

    #[test]
    fn protocol_v2_is_negotiated_over_ssh() {
        let repo = GitRepo::new();
        repo.commit("x");
        let ssh = SshServer::start();
        let out = output(
            git()
                .env(
                    "GIT_SSH_COMMAND",
                    ssh.git_ssh_command(&ssh.known_hosts_path()),
                )
                .env("GIT_TRACE_PACKET", "1")
                .args(["ls-remote", &ssh.url_for(repo.bare_path())]),
        );
        assert!(out.status.success());
        let trace = String::from_utf8_lossy(&out.stderr);
        assert!(
            trace.contains("version 2"),
            "AcceptEnv GIT_PROTOCOL works: {trace}"
        );
    }
}
