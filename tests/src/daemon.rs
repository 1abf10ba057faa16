//! [`GitDaemon`]: the real `git daemon` serving a directory of bare repositories over
//! `git://` on a loopback port.
//!
//! The daemon binary is started directly from `git --exec-path` rather than through the
//! `git daemon` wrapper: the wrapper runs it as a *child*, so killing the process we spawned
//! would leave the real daemon behind holding the port. It also runs as the leader of its own
//! process group, so that stopping it takes the per-connection `upload-pack` children along;
//! a test that calls [`GitDaemon::stop`] mid-transfer sees a real dropped connection.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::support::{
    free_port, git_exec_path, isolate_env, kill_group, read_log, require_tool, wait_for_port,
    wait_port_closed, StartError,
};

/// A running (or stopped) `git daemon`. Killed on drop.
pub struct GitDaemon {
    base: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Holds the daemon's log.
    dir: TempDir,
}

impl GitDaemon {
    /// Serves every repository under `base_dir` (read only, `upload-pack` only) on a free
    /// loopback port; returns once the port accepts connections.
    pub fn start(base_dir: impl AsRef<Path>) -> GitDaemon {
        require_tool("git", "apt-get install git");
        let base = base_dir
            .as_ref()
            .canonicalize()
            .unwrap_or_else(|e| panic!("git daemon base dir {}: {e}", base_dir.as_ref().display()));
        let dir = tempfile::Builder::new()
            .prefix("outpost-git-daemon-")
            .tempdir()
            .expect("create temp dir");
        let mut daemon = GitDaemon {
            base,
            port: 0,
            child: None,
            dir,
        };
        // The port is only reserved once the daemon binds it; another process may take it in
        // between, so retry with a new one a few times.
        let mut last = String::new();
        for _ in 0..5 {
            daemon.port = free_port();
            match daemon.spawn() {
                Ok(()) => return daemon,
                Err(e) => last = e,
            }
        }
        panic!("git daemon did not start: {last}");
    }

    /// Stops the daemon (and any transfer in progress). New connections are refused until
    /// [`GitDaemon::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
            wait_port_closed(self.port, Duration::from_secs(5));
        }
    }

    /// Starts the daemon again on the same port (after [`GitDaemon::stop`]).
    pub fn start_again(&mut self) {
        self.stop();
        // `--reuseaddr` lets it bind despite TIME_WAIT; retry in case the old socket lingers.
        let mut last = String::new();
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("git daemon did not restart on port {}: {last}", self.port);
    }

    /// Whether the daemon is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The TCP port, stable across stop/start_again.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The served base directory.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// `git://127.0.0.1:PORT/name` for the repository directory `name` under the base dir.
    pub fn url_for(&self, repo_dir_name: &str) -> String {
        format!(
            "git://127.0.0.1:{}/{}",
            self.port,
            repo_dir_name.trim_start_matches('/')
        )
    }

    /// The daemon's stderr log (all starts appended), for diagnosing a failing test.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let exe = git_exec_path().join("git-daemon");
        if !exe.exists() {
            panic!(
                "git-daemon not found at {}: install a git that ships it (apt-get install git)",
                exe.display()
            );
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open daemon log");
        let mut cmd = Command::new(&exe);
        isolate_env(&mut cmd);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.arg("--reuseaddr")
            .arg("--export-all")
            .arg("--informative-errors")
            .arg(format!("--base-path={}", self.base.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg("--enable=upload-pack")
            .arg("--disable=receive-pack")
            .arg("--disable=upload-archive")
            .arg(&self.base)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        match wait_for_port(self.port, &mut child, Duration::from_secs(10)) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                kill_group(&mut child);
                Err(match e {
                    StartError::Exited(status) => format!("exited {status}: {}", self.log()),
                    StartError::Timeout => format!("port {} never accepted", self.port),
                })
            }
        }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::{git, output, run};
    use crate::GitRepo;

    #[test]
    fn ls_remote_and_shallow_clone_over_git_protocol() {
        let repo = GitRepo::new();
        repo.write("k8s/deploy.yaml", b"kind: Deployment\n");
        let first = repo.commit("first");
        repo.write("k8s/deploy.yaml", b"kind: Deployment\nreplicas: 2\n");
        let second = repo.commit("second");
        let daemon = GitDaemon::start(repo.serve_dir());
        let url = daemon.url_for(repo.name());
        assert!(url.starts_with("git://127.0.0.1:"), "{url}");

        let refs = run(git().args(["ls-remote", &url]));
        assert!(
            refs.contains(&format!("{second}\trefs/heads/main")),
            "{refs}"
        );

        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("clone");
        run(git().args(["clone", "-q", "--depth", "1", &url]).arg(&dest));
        let count = run(git()
            .arg("-C")
            .arg(&dest)
            .args(["rev-list", "--count", "HEAD"]));
        assert_eq!(count, "1", "shallow clone has one commit");
        let body = std::fs::read_to_string(dest.join("k8s/deploy.yaml")).unwrap();
        assert!(body.contains("replicas: 2"));

        // allowAnySHA1InWant: fetch an older commit by id.
        run(git()
            .arg("-C")
            .arg(&dest)
            .args(["fetch", "-q", "--depth", "1", "origin", &first]));
        let shown = run(git().arg("-C").arg(&dest).args(["cat-file", "-t", &first]));
        assert_eq!(shown, "commit");
    }

    #[test]
    fn stop_refuses_and_start_again_serves_on_same_port() {
        let repo = GitRepo::new();
        let id = repo.commit("only");
        let mut daemon = GitDaemon::start(repo.serve_dir());
        let url = daemon.url_for(repo.name());
        let port = daemon.port();

        daemon.stop();
        assert!(!daemon.is_running());
        let out = output(git().args(["ls-remote", &url]));
        assert!(!out.status.success(), "ls-remote must fail while stopped");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port must refuse connections"
        );

        daemon.start_again();
        assert_eq!(daemon.port(), port);
        assert_eq!(daemon.url_for(repo.name()), url);
        let refs = run(git().args(["ls-remote", &url]));
        assert!(refs.contains(&id), "{refs}");
    }

    #[test]
    fn unknown_repository_is_an_error() {
        let repo = GitRepo::new();
        repo.commit("x");
        let daemon = GitDaemon::start(repo.serve_dir());
        let out = output(git().args(["ls-remote", &daemon.url_for("missing.git")]));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("does not appear to be a git repository")
                || stderr.contains("no such repository"),
            "{stderr}"
        );
    }
}
