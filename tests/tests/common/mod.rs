//! Running the real `outpost` binary against a site laid out in a temp dir: a config file, a state directory
//! and a directory target. Shared by the end-to-end suites.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod hub;

/// The agent binary under test, or `OUTPOST_BIN`: this package's `outpost-e2e`, the agent's own `main.rs` built
/// with this package, so that cargo rebuilds it for any test run of this package (`cargo test -p outpost-tests
/// --test NAME` included).
pub fn outpost_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTPOST_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_BIN_EXE_outpost-e2e"))
}

/// One edge site: its own config, state directory and target folder.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub sources: Vec<String>,
    pub agent_extra: String,
    /// More top-level TOML tables, written after the sources (e.g. `[upstream]`).
    pub tables: String,
    pub agent_id: String,
}

impl Site {
    pub fn new() -> Site {
        Site {
            dir: tempfile::Builder::new()
                .prefix("outpost-site-")
                .tempdir()
                .unwrap(),
            sources: Vec::new(),
            agent_extra: String::new(),
            tables: String::new(),
            agent_id: "test-site".into(),
        }
    }

    /// Adds a `[[source]]` with the directory target and quick timings; `extra` is more TOML for the table.
    pub fn source(
        &mut self,
        name: &str,
        url: &str,
        reference: &str,
        path: &str,
        extra: &str,
    ) -> &mut Site {
        let target = format!("directory:{}", self.target_dir().display());
        self.source_to(name, url, reference, path, &target, extra)
    }

    /// Adds a `[[source]]` applied to `target` (`kubernetes` or `directory:...`).
    pub fn source_to(
        &mut self,
        name: &str,
        url: &str,
        reference: &str,
        path: &str,
        target: &str,
        extra: &str,
    ) -> &mut Site {
        // Quick timings unless `extra` sets its own.
        let mut timings = String::new();
        for (key, value) in [("interval", "1s"), ("timeout", "20s")] {
            if !extra.contains(&format!("{key} =")) {
                timings.push_str(&format!("{key} = \"{value}\"\n"));
            }
        }
        self.sources.push(format!(
            "[[source]]\nname = \"{name}\"\nurl = \"{url}\"\n{reference}\npath = \"{path}\"\n{timings}target = \"{target}\"\n{extra}\n"
        ));
        self
    }

    pub fn write_config(&self) -> PathBuf {
        let text = format!(
            "[agent]\nid = \"{}\"\nstate_dir = \"{}\"\n{}\n{}\n{}",
            self.agent_id,
            self.state_dir().display(),
            self.agent_extra,
            self.sources.join("\n"),
            self.tables
        );
        let path = self.config_path();
        // Replaced atomically: a daemon that starts (or reloads) while a test runs `status` must never read a
        // half-written file.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            let tmp = self.dir.path().join(".agent.toml.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        }
        path
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn target_dir(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    pub fn applied_file(&self, source: &str) -> PathBuf {
        self.target_dir().join(format!("{source}.yaml"))
    }

    /// The applied file's text, or "" when there is none.
    pub fn applied(&self, source: &str) -> String {
        std::fs::read_to_string(self.applied_file(source)).unwrap_or_default()
    }

    /// The objects in the applied file.
    pub fn applied_objects(&self, source: &str) -> Vec<Value> {
        let text = self.applied(source);
        text.split("\n---\n")
            .skip(1)
            .map(|doc| {
                serde_json::to_value(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(doc).unwrap())
                    .unwrap()
            })
            .collect()
    }

    /// `data.version` of the applied ConfigMap `name`.
    pub fn applied_version(&self, source: &str, name: &str) -> Option<String> {
        self.applied_objects(source)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .and_then(|o| o["data"]["version"].as_str().map(String::from))
    }

    /// The revision named in the applied file's header.
    pub fn applied_revision(&self, source: &str) -> Option<String> {
        let text = self.applied(source);
        let first = text.lines().next()?;
        let rev = first.split("revision ").nth(1)?.split(',').next()?;
        Some(rev.to_string())
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(outpost_bin());
        cmd.arg("--config").arg(self.config_path()).args(args);
        cmd.env_remove("OUTPOST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.write_config();
        let out = self.command(args).output().expect("run outpost");
        eprintln!(
            "outpost {args:?} -> {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `outpost sync`, asserting its exit status.
    pub fn sync_ok(&self) -> String {
        let out = self.run(&["sync"]);
        assert!(
            out.status.success(),
            "sync failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `outpost sync` that must fail; returns stdout + stderr.
    pub fn sync_fails(&self) -> String {
        let out = self.run(&["sync"]);
        assert!(!out.status.success(), "sync should have failed");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    pub fn status_json(&self) -> Value {
        let out = self.run(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
    }

    pub fn source_status(&self, source: &str) -> Value {
        let status = self.status_json();
        status["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == source)
            .cloned()
            .unwrap_or_else(|| panic!("no status for {source}: {status}"))
    }

    /// The source's status, or `None` while a just-started daemon has not published one yet.
    pub fn try_source_status(&self, source: &str) -> Option<Value> {
        let out = self.run(&["status", "--json"]);
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        status["sources"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == source)
            .cloned()
    }

    /// Starts `outpost run` in the background, logging to a file in the site folder.
    pub fn spawn_daemon(&self) -> Daemon {
        self.write_config();
        let log = self.dir.path().join(format!(
            "daemon-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command(&["run"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn outpost run");
        Daemon { child, log }
    }
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id() as i32;
        // SAFETY-free: plain `kill` program keeps the tests free of libc.
        Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        let status = wait_child(&mut self.child, Duration::from_secs(20));
        status.is_some_and(|s| s.success())
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Polls `cond` until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

pub const CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n";

/// A ConfigMap manifest whose data says `version`.
pub fn configmap(name: &str, version: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  version: \"{version}\"\n")
}

/// A site with one source `app` (branch main, folder `deploy`) from an HTTPS server, trusting the server's CA
/// (`ca_file`) and sending `token` from a token file; returns the site and that file, which a test may rewrite.
pub fn https_token_site(
    server: &outpost_tests::GitHttpServer,
    repo: &outpost_tests::GitRepo,
    token: &str,
) -> (Site, PathBuf) {
    let mut site = Site::new();
    let ca = server.write_ca(site.dir.path());
    let token_file = site.dir.path().join("git-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    site.source(
        "app",
        &server.url_for(repo.name()),
        "branch = \"main\"",
        "deploy",
        &format!(
            "ca_file = \"{}\"\n[source.auth]\ntoken_file = \"{}\"",
            ca.display(),
            token_file.display()
        ),
    );
    (site, token_file)
}

/// Every file under `dir` that holds `needle`: how tests show that a secret never reached the disk.
pub fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            } else {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(entry.path());
                }
            }
        }
    }
    found
}

/// A file of the SOPS known-answer data that the real `sops` wrote (Flux's test data, see its README).
pub fn sops_testdata(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../agent/src/sops/testdata/flux")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes SOPS test identities (files of the test data) into the site's folder as one identities file, mode
/// 0600 as the agent requires.
pub fn write_identities(site: &Site, names: &[&str]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = site.dir.path().join("age.key");
    let text: String = names.iter().map(|n| sops_testdata(n)).collect();
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}
