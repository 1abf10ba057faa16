//! Small process and network helpers shared by every fixture.
//!
//! The fixtures drive real programs (`git`, `git daemon`, `git http-backend`, `sshd`), so
//! the same few chores keep coming up: finding a binary (and failing with an install hint
//! rather than a bare `ENOENT`), running `git` with an environment that the developer's own
//! configuration cannot leak into, finding a free loopback port, and waiting until a freshly
//! started server really accepts connections.

use std::ffi::OsStr;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Environment variables that change how `git`, `ssh` or curl behave and that the machine
/// (or a developer shell) may have set. Fixtures and the commands they hand out remove them,
/// so a test only sees the settings it chose itself. (This machine, for one, exports
/// `GIT_SSL_CAINFO` pointing at the system bundle, which would hide a missing CA setup.)
const LEAKY_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_NAMESPACE",
    "GIT_PROTOCOL",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_SSH_VARIANT",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_SSL_NO_VERIFY",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_TERMINAL_PROMPT",
    "GIT_TRACE",
    "GIT_TRACE_PACKET",
    "GIT_CURL_VERBOSE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
];

/// Looks for `name` on `PATH` and in the sbin directories (where `sshd` lives but which are
/// not on a normal user's `PATH`). Panics with `install_hint` when it is nowhere.
pub fn require_tool(name: &str, install_hint: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| panic!("{name} not found: {install_hint}"))
}

/// Like [`require_tool`], without panicking.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A `HOME` directory that belongs to the test process and holds no configuration, so the
/// developer's `~/.gitconfig` (URL rewrites, credential helpers, `init.defaultBranch`, ...)
/// cannot change what the fixtures or the tests observe. Created once per process and left
/// in the temp directory: it is tiny and processes may still use it during teardown.
pub fn isolated_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("outpost-test-home-")
            .tempdir()
            .expect("create an isolated HOME")
            .keep();
        std::fs::write(dir.join(".gitconfig"), b"").expect("write empty .gitconfig");
        dir
    })
}

/// Removes the variables in `LEAKY_ENV` from `cmd` and points `HOME` at [`isolated_home`].
pub fn isolate_env(cmd: &mut Command) -> &mut Command {
    for var in LEAKY_ENV {
        cmd.env_remove(var);
    }
    cmd.env("HOME", isolated_home())
        .env("XDG_CONFIG_HOME", isolated_home().join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Outpost Test")
        .env("GIT_AUTHOR_EMAIL", "test@outpost.invalid")
        .env("GIT_COMMITTER_NAME", "Outpost Test")
        .env("GIT_COMMITTER_EMAIL", "test@outpost.invalid")
        .env("LC_ALL", "C")
}

/// A `git` command with an isolated environment (see [`isolate_env`]). Tests use it to play
/// the client side (`git ls-remote`, `git clone`) against the fixtures.
pub fn git() -> Command {
    require_tool("git", "apt-get install git");
    let mut cmd = Command::new("git");
    isolate_env(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd`, panicking with its stderr when it cannot start or exits non-zero; returns
/// trimmed stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!(
            "command failed ({}): {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs `cmd` to completion and returns its output whatever the exit status.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd))
}

/// A loopback port that was free a moment ago. Servers that we cannot hand a pre-bound
/// socket to (git daemon, sshd) get one of these; their start-up code retries with a new
/// port if another process grabbed it in between.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// One field of `/proc/<pid>/status` (e.g. `VmRSS:`) as the kernel prints it (`25004 kB`), or `?`, for the
/// benchmarks' memory figures.
/// Runs `cmd` to its end and returns whether it exited 0 and its peak RSS in KiB (the kernel's `ru_maxrss`, from
/// `wait4`, which reaps the child and reports its resource usage in one call).
pub fn run_peak_rss(cmd: &mut Command) -> (bool, u64) {
    // Reaped below with wait4.
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("spawn the measured command");
    let mut status = 0;
    // SAFETY: plain FFI; `usage` is written by the kernel for the child we spawned and have not reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(reaped, child.id() as i32, "wait4 reaped another process");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, usage.ru_maxrss as u64)
}

pub fn proc_status_field(pid: u32, name: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "?".into())
}

/// Why a server did not come up.
#[derive(Debug)]
pub enum StartError {
    /// The process exited; the string holds its exit status.
    Exited(String),
    /// The port did not accept connections in time.
    Timeout,
}

/// Waits until `127.0.0.1:port` accepts a TCP connection, checking that `child` is still
/// running in between (a server that died, e.g. because the port was taken, is reported at
/// once instead of after the timeout).
pub fn wait_for_port(port: u16, child: &mut Child, timeout: Duration) -> Result<(), StartError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Err(StartError::Exited(status.to_string()));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to `timeout`) until `127.0.0.1:port` refuses connections.
///
/// Closing a listening socket is not always the end of it: another thread of the test
/// process may be forking a child at that moment (every fixture spawns `git`), and the child
/// holds a copy of the socket until its `exec` closes it. A connection made in that window is
/// accepted by the kernel and then reset. Servers call this after stopping, so a test that
/// stops a server and immediately checks "connection refused" sees exactly that.
pub fn wait_port_closed(port: u16, timeout: Duration) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Sends SIGKILL to the process group led by `child` (the fixtures start their servers as
/// group leaders so that per-connection children die with them), then reaps `child`.
pub fn kill_group(child: &mut Child) {
    if child.try_wait().ok().flatten().is_none() {
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) has no memory-safety requirements; a negative pid addresses the
        // process group that `child` leads (set up with `process_group(0)`).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Reads a log file for a panic message; never fails.
pub fn read_log(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// `git --exec-path`: where `git-daemon`, `git-http-backend` and `git-upload-pack` live.
pub fn git_exec_path() -> PathBuf {
    static EXEC: OnceLock<PathBuf> = OnceLock::new();
    EXEC.get_or_init(|| PathBuf::from(run(git().arg("--exec-path"))))
        .clone()
}

/// The file name of `path` as a `&str`, for building URLs.
pub(crate) fn file_name_str(path: &Path) -> &str {
    path.file_name()
        .and_then(OsStr::to_str)
        .expect("path has a UTF-8 file name")
}

/// The instructions of a Containerfile, keyword upper-cased and first, with comments and blank lines dropped and
/// continuation lines joined: enough to check what a stage does without a container engine.
pub fn containerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), rest.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The instructions of a Containerfile's final stage (after its last `FROM`).
pub fn final_stage(text: &str) -> Vec<(String, String)> {
    let all = containerfile_instructions(text);
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").unwrap_or(0);
    all[last_from..].to_vec()
}
