//! The Debian package: built by cargo-deb from the static binary, its contents read back with `dpkg-deb`,
//! checked by lintian, and then installed, upgraded, removed and purged inside a
//! throwaway root (`dpkg --root`), never on the machine running the tests.

use super::*;

/// Builds `outpost_<version>_amd64.deb` once per run from the static dev binary; `None` when a prebuilt static
/// binary was named (`OUTPOST_STATIC_BIN`). Panics with the install step when cargo-deb is missing.
fn package() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            std::env::var_os("OUTPOST_STATIC_BIN").is_none().then_some(())?;
            static_binary()?;
            let has_cargo_deb = cargo()
                .args(["deb", "--version"])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                has_cargo_deb,
                "cargo-deb is not installed: run `cargo install --locked cargo-deb` (scripts/test does)"
            );
            let dir = target_dir().join("deb-test");
            std::fs::create_dir_all(&dir).unwrap();
            let deb = dir.join("outpost.deb");
            let out = cargo()
                .args(["deb", "-p", "outpost-agent", "--no-build", "--target", MUSL])
                .args(["--profile", "static-test"])
                .arg("--output")
                .arg(&deb)
                .env("CARGO_TARGET_DIR", target_dir())
                .output()
                .expect("run cargo deb");
            assert!(
                out.status.success(),
                "cargo deb failed:\n{}",
                text(&out)
            );
            Some(deb)
        })
        .clone()
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("run dpkg-deb");
    assert!(out.status.success(), "dpkg-deb {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_holds_the_binary_the_unit_and_the_config() {
    let Some(deb) = package() else {
        return;
    };
    let listing = dpkg_deb(&["-c"], &deb);
    let entry = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} is in the package:\n{listing}"))
            .to_string()
    };
    // Mode and owner (dpkg-deb shows root as 0/0 or root/root, depending on how the tar was written).
    let owned_by_root = |line: &str, mode: &str| {
        line.starts_with(&format!("{mode} 0/0 ")) || line.starts_with(&format!("{mode} root/root "))
    };
    assert!(owned_by_root(&entry("./usr/bin/outpost"), "-rwxr-xr-x"));
    assert!(owned_by_root(
        &entry("./lib/systemd/system/outpost.service"),
        "-rw-r--r--"
    ));
    assert!(owned_by_root(
        &entry("./etc/outpost/agent.toml"),
        "-rw-r--r--"
    ));
    entry("./usr/share/doc/outpost/copyright");

    let control = dpkg_deb(&["-f"], &deb);
    for field in [
        "Package: outpost",
        &format!("Version: {}", env!("CARGO_PKG_VERSION")),
        "Architecture: amd64",
    ] {
        assert!(control.contains(field), "{field} in:\n{control}");
    }
    let conffiles = dpkg_deb(&["--info"], &deb);
    assert!(
        conffiles.contains("postinst") && conffiles.contains("postrm"),
        "{conffiles}"
    );

    // What is installed is what the repository holds, and the example config is one the agent accepts.
    let unpacked = tempfile::tempdir().unwrap();
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(unpacked.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert_eq!(
        std::fs::read(unpacked.path().join("lib/systemd/system/outpost.service")).unwrap(),
        std::fs::read(repo_root.join("systemd/outpost.service")).unwrap()
    );
    let config = unpacked.path().join("etc/outpost/agent.toml");
    let parsed = outpost_agent::config::Config::load(&config);
    assert!(parsed.is_ok(), "{:?}", parsed.err());

    let lintian = require_tool("lintian", "apt-get install lintian (scripts/test does)");
    let out = Command::new(lintian)
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(&deb)
        .output()
        .expect("run lintian");
    eprintln!("lintian:\n{}", text(&out));
    assert!(
        out.status.success(),
        "lintian found errors:\n{}",
        text(&out)
    );
}

/// A root holding only what dpkg needs to keep its database and what useradd edits.
fn throwaway_root() -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("outpost-dpkg-root-")
        .tempdir()
        .unwrap();
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/log",
        "etc",
    ] {
        std::fs::create_dir_all(root.path().join(dir)).unwrap();
    }
    for (file, text) in [
        ("var/lib/dpkg/status", ""),
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/shadow", "root:*:20000:0:99999:7:::\n"),
        ("etc/gshadow", "root:*::\n"),
    ] {
        std::fs::write(root.path().join(file), text).unwrap();
    }
    root
}

fn dpkg(root: &Path, args: &[&str]) -> Output {
    Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        // The throwaway root has no packages, so `Depends: passwd` cannot be met there; the useradd that
        // passwd provides is the host's (chrootless scripts run on the host, editing the root's files).
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--log=/dev/null",
        ])
        .args(args)
        .output()
        .expect("run dpkg")
}

#[test]
fn the_package_installs_upgrades_removes_and_purges_in_a_throwaway_root() {
    let Some(deb) = package() else {
        return;
    };
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: installing into a throwaway root needs root (useradd and dpkg write its files)");
        return;
    }
    let root = throwaway_root();
    let r = root.path();
    let deb = deb.to_str().unwrap();
    let ok = |out: Output| assert!(out.status.success(), "{}", text(&out));
    let outpost_users = || {
        std::fs::read_to_string(r.join("etc/passwd"))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("outpost:"))
            .count()
    };

    ok(dpkg(r, &["-i", deb]));
    assert_eq!(outpost_users(), 1, "postinst created the system user");
    let version = Command::new(r.join("usr/bin/outpost"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        text(&version).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&version)
    );
    let status = text(&dpkg(r, &["-s", "outpost"]));
    assert!(status.contains("Status: install ok installed"), "{status}");

    // An operator's edit survives an upgrade (reinstall), which does not add the user twice.
    let config = r.join("etc/outpost/agent.toml");
    let edited = format!("{}\n# site 42\n", std::fs::read_to_string(&config).unwrap());
    std::fs::write(&config, &edited).unwrap();
    ok(dpkg(r, &["--force-confold", "-i", deb]));
    assert_eq!(outpost_users(), 1);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);

    // Remove keeps the config and the state; purge removes both.
    std::fs::create_dir_all(r.join("var/lib/outpost/store")).unwrap();
    ok(dpkg(r, &["-r", "outpost"]));
    assert!(!r.join("usr/bin/outpost").exists());
    assert!(config.exists(), "remove keeps the conffile");
    assert!(
        r.join("var/lib/outpost/store").exists(),
        "remove keeps the state"
    );
    ok(dpkg(r, &["-P", "outpost"]));
    assert!(!config.exists(), "purge removes the conffile");
    assert!(
        !r.join("var/lib/outpost").exists(),
        "purge removes the state"
    );
    let status = text(&dpkg(r, &["-s", "outpost"]));
    assert!(!status.contains("install ok installed"), "{status}");
}
