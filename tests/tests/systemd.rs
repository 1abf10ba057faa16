//! The systemd unit and the sd_notify protocol: the unit verifies cleanly and scores an exposure of at most
//! 2.0, and `outpost run` reports READY=1 only after the last good state is applied, then pings the watchdog.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{configmap, outpost_bin, Site};
use outpost_tests::GitRepo;

/// A unit of the repository with ExecStart pointing at the binary under test (verify checks it exists).
fn unit_under_test(dir: &std::path::Path, name: &str, binary: &str) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../systemd/{name}")),
    )
    .unwrap();
    let built = outpost_bin().with_file_name(binary);
    assert!(
        built.exists(),
        "{} not built: run the suite with `cargo test --workspace`",
        built.display()
    );
    let unit = unit.replace(
        &format!("/usr/bin/{binary} "),
        &format!("{} ", built.display()),
    );
    let path = dir.join(name);
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn agent_unit_verifies_and_is_locked_down() {
    check_unit("outpost.service", "outpost");
}

#[test]
fn hub_unit_verifies_and_is_locked_down() {
    check_unit("outpost-hub.service", "outpost-hub");
}

/// The hub derives its connection cap from the open-files limit: the unit must give it enough for the full
/// cap, or idle connections exhaust the descriptors it needs for its own files.
#[test]
fn hub_unit_gives_the_hub_descriptors_for_its_connection_cap() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/outpost-hub.service"),
    )
    .unwrap();
    let limit: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .unwrap_or_else(|| {
            panic!("the hub's unit sets no LimitNOFILE= (the soft limit is then 1024)")
        })
        .trim()
        .parse()
        .expect("LimitNOFILE= is one number");
    assert_eq!(
        outpost_hub::server::fds::connection_cap(limit),
        outpost_hub::server::MAX_CONNECTIONS,
        "LimitNOFILE={limit} is too low for the hub's connection cap"
    );
}

fn check_unit(name: &str, binary: &str) {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path(), name, binary);
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd) is needed: apt-get install systemd");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(": ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

#[test]
fn ready_after_last_good_then_watchdog_pings() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    repo.commit("1");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    site.sync_ok();
    // Wipe the target: READY=1 must come only after the last good revision is back.
    std::fs::remove_dir_all(site.target_dir()).unwrap();

    let socket_path = site.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    site.write_config();
    let mut child = site
        .command(&["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(
        site.applied_file("app").exists(),
        "READY=1 came before the last good revision was applied"
    );
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(2) {
        let n = socket.recv(&mut buf).unwrap();
        if &buf[..n] == b"WATCHDOG=1" {
            pings += 1;
        }
    }
    assert!(pings >= 3, "watchdog every 200 ms; got {pings} in 2 s");
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let mut stopping = false;
    while let Ok(n) = socket.recv(&mut buf) {
        if &buf[..n] == b"STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 on SIGTERM");
    assert!(child.wait().unwrap().success());
}
