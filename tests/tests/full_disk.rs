//! A full disk under the state directory: a small tmpfs mounted there (root only; elsewhere the test says it
//! was skipped), filled to the last byte while the agent has a new revision to record. The agent says the disk
//! is full and exits for its supervisor to restart it, nothing already recorded is damaged, and once space is
//! freed the restarted agent converges without any repair.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{configmap, wait_until, Site};
use outpost_tests::GitRepo;

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: mounting a small tmpfs for the state directory needs root");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem refuses; returns how many bytes fit.
fn fill(path: &Path) -> usize {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    let mut written = 0;
    loop {
        match file.write(&block) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    // Smaller writes take what the big ones could not.
    while let Ok(n) = file.write(&block[..512]) {
        if n == 0 {
            break;
        }
        written += n;
    }
    let _ = file.sync_all();
    written
}

fn big_configmap(version: &str) -> String {
    let payload = "x".repeat(400 * 1024);
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  version: \"{version}\"\n  payload: {payload}\n"
    )
}

#[test]
fn a_full_state_disk_fails_clearly_damages_nothing_and_recovers() {
    let mut site = Site::new();
    let Some(_mounted) = Tmpfs::mount(&site.state_dir(), "16m") else {
        return;
    };
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let first = repo.commit("app 1");
    site.source(
        "app",
        &repo.file_url(),
        "branch = \"main\"",
        "deploy",
        "interval = \"1s\"",
    );
    let daemon = site.spawn_daemon();
    wait_until(
        Duration::from_secs(30),
        "the first revision applied",
        || site.applied_revision("app").as_deref() == Some(first.as_str()),
    );

    // The disk fills up under the running agent; the next revision is large, so recording it needs room.
    let filler = site.state_dir().join("filler");
    assert!(fill(&filler) > 0, "the filler took the free space");
    repo.write("deploy/big.yaml", big_configmap("2").as_bytes());
    let second = repo.commit("big 2");
    // sled cannot write again once a write failed, so the daemon says why and exits with a failure for its
    // supervisor to restart it.
    let mut daemon = daemon;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = daemon.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not exit after its disk filled:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = daemon.log();
    assert!(!exit.success(), "{exit:?}\n{log}");
    assert!(
        log.contains("No space left on device")
            || log.contains("the disk under state_dir is full or failing"),
        "{log}"
    );
    assert!(
        log.contains("exiting so that the supervisor restarts the agent"),
        "{log}"
    );
    // Room again: the supervisor's restart converges, and what was recorded is whole.
    std::fs::remove_file(&filler).unwrap();
    let mut daemon = site.spawn_daemon();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(site.applied_revision("app").as_deref() == Some(second.as_str())
        && site
            .try_source_status("app")
            .is_some_and(|s| s["state"] == "Ready" && s["last_good"] == second.as_str()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not converged once there is room: {:?}\n{}",
            site.try_source_status("app"),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill")
        .arg("-TERM")
        .arg(daemon.child.id().to_string())
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while daemon.child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not stop within 30 s of SIGTERM:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing recorded is damaged: the store opens, its last good is a whole revision, and a sync converges.
    let status = site.run(&["status", "--json"]);
    let status: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("the store opens");
    let recorded = status["sources"][0]["last_good"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(recorded == first || recorded == second, "{status}");
    site.sync_ok();
    assert_eq!(site.source_status("app")["last_good"], second.as_str());
    assert!(site.applied("app").contains("version: '2'"));

    // Full again with the agent stopped: a command cannot even open the store, and says why and what to check;
    // with room, the same store opens and syncs.
    assert!(fill(&filler) > 0);
    repo.write("deploy/big.yaml", big_configmap("3").as_bytes());
    let third = repo.commit("big 3");
    let out = site.run(&["sync"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    // Whether sled cannot open the store, cannot write or cannot flush, the operator reads why and what to do.
    assert!(
        (said.contains("No space left on device")
            && (said.contains("the disk is not full") || said.contains("has free space")))
            || said.contains("the disk under state_dir is full or failing"),
        "{said}"
    );
    std::fs::remove_file(&filler).unwrap();
    site.sync_ok();
    assert_eq!(
        site.applied_revision("app").as_deref(),
        Some(third.as_str())
    );
    assert_eq!(site.source_status("app")["last_good"], third.as_str());
}
