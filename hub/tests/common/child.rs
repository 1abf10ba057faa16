//! The real `outpost-hub serve` as a child process, for what only a separate process shows: its memory
//! (`/proc/PID/status`), its open-files limit, and its log on stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestError;

/// How long a child hub may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ChildHub {
    child: Child,
    pub pid: u32,
    pub port: u16,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl ChildHub {
    /// Starts a hub whose config is `body` (agents, history, ...) plus listen and paths. With `open_files`,
    /// it runs under `ulimit -n` of that many.
    pub fn start(body: &str, open_files: Option<u32>) -> Result<ChildHub, TestError> {
        ChildHub::start_with_key(body, open_files, None)
    }

    /// [`ChildHub::start`] signing with a copy of the hub key at `key` (replicas share one key).
    pub fn start_with_key(
        body: &str,
        open_files: Option<u32>,
        key: Option<&Path>,
    ) -> Result<ChildHub, TestError> {
        let dir = tempfile::tempdir()?;
        if let Some(key) = key {
            std::fs::copy(key, dir.path().join("hub.key"))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\nkey_file = \"{}\"\n{body}\n{}",
            dir.path().join("state").display(),
            dir.path().join("hub.key").display(),
            super::reader_table()
        );
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, config)?;
        let log = dir.path().join("hub.log");
        let binary = env!("CARGO_BIN_EXE_outpost-hub");
        let mut command = match open_files {
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!(
                        "ulimit -n {n} && exec \"$0\" serve --config \"$1\""
                    ))
                    .arg(binary)
                    .arg(&path);
                sh
            }
            None => {
                let mut hub = Command::new(binary);
                hub.arg("serve").arg("--config").arg(&path);
                hub
            }
        };
        let mut child = command
            .env("OUTPOST_HUB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no hub stdout")?;
        let hub = ChildHub {
            child,
            pid,
            port,
            dir,
            log,
        };
        let (ready, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                if line.is_ok_and(|l| l.starts_with("listening on")) {
                    let _ = ready.send(());
                    break;
                }
            }
            // Keep reading so the hub never blocks on a full pipe.
            for _ in lines {}
        });
        listening
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| format!("the hub did not start listening: {}", hub.log()))?;
        Ok(hub)
    }

    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.authority())
    }

    /// Kills the hub at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) -> Result<(), TestError> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// What the hub wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A line of `/proc/PID/status` in KiB, e.g. `VmHWM` (peak resident memory).
    pub fn status_kib(&self, field: &str) -> Result<u64, TestError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let line = status
            .lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .ok_or_else(|| format!("no {field} in /proc/{}/status", self.pid))?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .ok_or("bad status line")?
            .parse()?)
    }

    /// SIGTERM, then waits for the hub to finish; returns whether it exited cleanly.
    pub fn terminate(mut self) -> Result<(String, bool), TestError> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.child.try_wait()? {
                return Ok((self.log(), status.success()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("the hub did not stop: {}", self.log()).into())
    }
}

impl Drop for ChildHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes one HTTP/1.1 request on a kept-alive connection and reads the answer: status and body.
pub fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<(u16, Vec<u8>), TestError> {
    stream.write_all(request)?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(format!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&head)
            )
            .into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.split_whitespace().nth(1).ok_or("no status")?.parse()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no Content-Length in {head}"))?;
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok((status, body))
}

/// Where the test's temporary token files go.
pub fn write_private(dir: &Path, name: &str, text: &str) -> Result<PathBuf, TestError> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}
