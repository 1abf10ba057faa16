//! The command line as an operator meets it. Also makes cargo build the `outpost` binary before any test runs,
//! which the end-to-end suites in `tests/` rely on.

use std::process::Command;

fn outpost(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .env_remove("OUTPOST_CONFIG")
        .output()
        .expect("run outpost")
}

#[test]
fn help_lists_every_command() {
    let out = outpost(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in [
        "run",
        "sync",
        "status",
        "render",
        "--config",
        "--log-format",
    ] {
        assert!(text.contains(command), "{command} missing from:\n{text}");
    }
    let version = outpost(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn missing_config_says_how_to_point_at_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = outpost(&["--config", missing.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope.toml") && err.contains("OUTPOST_CONFIG"),
        "{err}"
    );
}

#[test]
fn config_from_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nid = \"env-site\"\nstate_dir = \"state\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["status", "--json"])
        .env("OUTPOST_CONFIG", &config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["agent_id"], "env-site");
    assert!(
        dir.path().join("state/store").is_dir(),
        "state_dir is relative to the config file"
    );
}

#[test]
fn keygen_creates_once_with_mode_0600_and_prints_the_same_key_again() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[agent]\nid = \"k\"\nstate_dir = \"state\"\n").unwrap();
    let run = || outpost(&["--config", config.to_str().unwrap(), "keygen"]);
    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = String::from_utf8_lossy(&first.stdout).to_string();
    let mut lines = text.lines();
    let public = lines.next().unwrap();
    assert!(
        public.starts_with("ed25519:") && public.len() == 8 + 44,
        "{public}"
    );
    let fingerprint = lines.next().unwrap();
    assert!(
        fingerprint.starts_with("fingerprint SHA256:"),
        "{fingerprint}"
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("created"));
    let key = dir.path().join("state/agent.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let second = run();
    assert_eq!(
        String::from_utf8_lossy(&second.stdout),
        text,
        "the key is kept, not replaced"
    );
    // A key readable by others is refused with the fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = run();
    assert!(!loose.status.success());
    assert!(String::from_utf8_lossy(&loose.stderr).contains("chmod 600"));
}
