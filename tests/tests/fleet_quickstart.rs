//! `examples/fleet-quickstart.sh` as a newcomer runs it (issue 18, item 6): a hub, a read and an admin
//! credential, a bootstrap token per site, two agents enrolled with `outpost enroll` and syncing a directory
//! target from a local Git repository, and the fleet page's address. Run with this tree's binaries.

use std::process::Command;

#[test]
fn the_fleet_quickstart_enrolls_two_syncing_sites() {
    let work = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/fleet-quickstart.sh"
    );
    let out = Command::new("bash")
        .arg(script)
        .env("OUTPOST_BIN", env!("CARGO_BIN_EXE_outpost-e2e"))
        .env("OUTPOST_HUB_BIN", env!("CARGO_BIN_EXE_outpost-hub-e2e"))
        .env("OUTPOST_FLEET_QUICKSTART_DIR", work.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // Both sites enrolled with the labels of their tokens, and their source is Ready at the hub.
    for site in ["berlin", "lyon"] {
        assert!(
            stdout.contains(&format!("enrolled agent \"shop-{site}\"")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("site={site}")), "{stdout}");
        let dir = work.path().join(format!("site-{site}"));
        let config = std::fs::read_to_string(dir.join("agent.toml")).unwrap();
        assert!(
            config.contains("[upstream]") && config.contains("hub_key = \"ed25519:"),
            "{config}"
        );
        let applied = std::fs::read_to_string(dir.join("manifests/shop.yaml")).unwrap();
        assert!(
            applied.contains("hello from the fleet quickstart"),
            "{applied}"
        );
    }
    let ready = stdout
        .lines()
        .filter(|l| l.starts_with("shop-") && l.contains(" online ") && l.contains(" Ready "))
        .count();
    assert_eq!(ready, 2, "{stdout}");
    assert!(
        stdout.contains("The fleet page: http://127.0.0.1:"),
        "{stdout}"
    );

    // No token is ever printed: not the credentials, not the bootstrap tokens.
    let mut secrets = vec![
        work.path().join("admin.token"),
        work.path().join("read.token"),
    ];
    for site in ["berlin", "lyon"] {
        secrets.push(work.path().join(format!("site-{site}/bootstrap.token")));
    }
    for file in secrets {
        let token = std::fs::read_to_string(&file).unwrap();
        let token = token.trim();
        assert!(token.len() >= 32, "{}", file.display());
        assert!(
            !stdout.contains(token) && !stderr.contains(token),
            "{} was printed",
            file.display()
        );
    }
}

/// `outpost enroll` writes nothing when the hub's key is not the one the operator named, and the token file
/// must be private; with the right fingerprint it writes `[upstream]` once.
#[test]
fn enroll_checks_the_hub_key_fingerprint() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = "4e1f0c9b8a7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f";
    let token_file = dir.path().join("bootstrap.token");
    std::fs::write(&token_file, token).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hub_toml = dir.path().join("hub.toml");
    std::fs::write(
        &hub_toml,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{0}/hub\"\nbootstrap_token_file = \"{0}/bootstrap.token\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut hub = Command::new(env!("CARGO_BIN_EXE_outpost-hub-e2e"))
        .args(["serve", "--config"])
        .arg(&hub_toml)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(hub.stdout.take().unwrap()).lines();
    let (mut addr, mut fingerprint) = (String::new(), String::new());
    while addr.is_empty() {
        let line = lines.next().unwrap().unwrap();
        if let Some(f) = line.strip_prefix("hub key fingerprint: ") {
            fingerprint = f.to_owned();
        }
        if let Some(a) = line.strip_prefix("listening on ") {
            addr = a.to_owned();
        }
    }
    let agent_toml = dir.path().join("agent.toml");
    let original = format!(
        "[agent]\nid = \"shop-1\"\nstate_dir = \"{}/agent\"\n",
        dir.path().display()
    );
    std::fs::write(&agent_toml, &original).unwrap();
    let enroll = |fingerprint: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_outpost-e2e"))
            .arg("--config")
            .arg(&agent_toml)
            .args(["enroll", "--hub", &format!("http://{addr}"), "--token-file"])
            .arg(&token_file)
            .args(["--hub-key-fingerprint", fingerprint])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(token), "the token was printed: {text}");
        (out.status.success(), text)
    };
    let other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (ok, text) = enroll(other);
    assert!(
        !ok && text.contains("not the hub you were told to join"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&agent_toml).unwrap(), original);

    // The same agent and key again is accepted by the hub (a retry), and now the key matches.
    let (ok, text) = enroll(&fingerprint);
    assert!(ok, "{text}");
    let written = std::fs::read_to_string(&agent_toml).unwrap();
    assert!(
        written.starts_with(&original) && written.contains(&format!("url = \"http://{addr}\"")),
        "{written}"
    );
    let (ok, text) = enroll(&fingerprint);
    assert!(ok && text.contains("already names this hub"), "{text}");
    assert_eq!(std::fs::read_to_string(&agent_toml).unwrap(), written);

    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, text) = enroll(&fingerprint);
    assert!(!ok && text.contains("chmod 600"), "{text}");
    hub.kill().unwrap();
    hub.wait().unwrap();
}
