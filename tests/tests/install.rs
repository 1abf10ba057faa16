//! The install paths that rest on the static binary: it must work in an empty root, which is all a scratch
//! image is; the image itself must build from the Containerfile and run; and the Debian package must hold what
//! the README's install section promises.
//!
//! The static binary is built here, for `x86_64-unknown-linux-musl` with the cheap `static-test` profile, into
//! the suite's own target directory. A missing musl target, cargo-deb, lintian or buildah fails the test that needs
//! it, naming the install step: `scripts/test` (the README's test command) installs them all.

mod common;

#[path = "install/deb.rs"]
mod deb;
#[path = "install/image.rs"]
mod image;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::configmap;
use outpost_tests::{require_tool, GitHttpServer, GitRepo};

const MUSL: &str = "x86_64-unknown-linux-musl";

/// The suite's target directory: test binaries live in `<target>/<profile>/deps/`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("<target>/<profile>/deps/<test>")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    cmd
}

fn musl_installed() -> bool {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(MUSL)
        .join("lib")
        .is_dir()
}

/// The static `outpost`, built once per run (`OUTPOST_STATIC_BIN` names a prebuilt one, e.g. the release
/// build). Panics with the install step when the musl target is missing.
fn static_binary() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(bin) = std::env::var_os("OUTPOST_STATIC_BIN") {
                return Some(PathBuf::from(bin));
            }
            assert!(
                musl_installed(),
                "the {MUSL} target is not installed: run `rustup target add {MUSL}` and install Debian's \
                 musl-tools (scripts/test does both)"
            );
            let target = target_dir();
            let out = cargo()
                .args(["build", "--profile", "static-test", "--target", MUSL])
                .args(["-p", "outpost-agent", "--bin", "outpost"])
                .arg("--target-dir")
                .arg(&target)
                .output()
                .expect("run cargo");
            assert!(
                out.status.success(),
                "building the static binary failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(target.join(MUSL).join("static-test/outpost"))
        })
        .clone()
}

/// The uid:gid the image runs as (its final stage's `USER`).
fn image_user() -> String {
    final_stage()
        .into_iter()
        .find(|(k, _)| k == "USER")
        .map(|(_, v)| v)
        .expect("a USER in the final stage")
}

fn final_stage() -> Vec<(String, String)> {
    let file = repo_root().join("packaging/Containerfile");
    outpost_tests::support::final_stage(
        &std::fs::read_to_string(file).expect("read the Containerfile"),
    )
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `/outpost args` with `root` as `/`, as the image's user and with an empty environment: as root with
/// `chroot --userspec`, otherwise in a user namespace with `unshare -r chroot` (as the namespace's root).
fn in_root(root: &Path, args: &[&str]) -> Output {
    let chroot = require_tool("chroot", "apt-get install coreutils");
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new(&chroot);
        c.arg(format!("--userspec={}", image_user()));
        c
    } else {
        let mut c = Command::new(require_tool("unshare", "apt-get install util-linux"));
        c.arg("-r").arg(&chroot);
        c
    };
    cmd.arg(root)
        .arg("/outpost")
        .args(args)
        .env_clear()
        .output()
        .expect("run chroot")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A root laid out as the Containerfile's final stage lays out the image (each `COPY`, the binary being the
/// static one built here), plus what the workloads mount: the config at `/agent.toml`, and a state directory
/// and a target folder owned by the image's user.
fn image_root(binary: &Path, sources: &str) -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix("outpost-root-")
        .tempdir()
        .unwrap();
    let r = root.path();
    for (keyword, args) in final_stage() {
        if keyword != "COPY" {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        let (from, dest) = (words[words.len() - 2], words[words.len() - 1]);
        let src = if words[0].starts_with("--from=") {
            binary.to_path_buf()
        } else {
            repo_root().join(from)
        };
        let dest = r.join(dest.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dest).unwrap_or_else(|e| panic!("COPY {args}: {e}"));
    }
    assert!(r.join("outpost").exists(), "the image holds /outpost");
    let (uid, gid) = image_user()
        .split_once(':')
        .map(|(u, g)| (u.parse::<u32>().unwrap(), g.parse::<u32>().unwrap()))
        .expect("USER uid:gid");
    for dir in ["state", "deploy"] {
        std::fs::create_dir(r.join(dir)).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(r.join(dir), Some(uid), Some(gid)).unwrap();
        }
    }
    let config = format!("[agent]\nid = \"edge-1\"\nstate_dir = \"/state\"\n\n{sources}");
    std::fs::write(r.join("agent.toml"), config).unwrap();
    root
}

fn source(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nurl = \"{url}\"\nbranch = \"main\"\npath = \"deploy\"\n\
         timeout = \"20s\"\ntarget = \"directory:/deploy\"\n{extra}\n"
    )
}

#[test]
fn the_static_binary_is_static() {
    let Some(binary) = static_binary() else {
        return;
    };
    let out = Command::new("ldd").arg(&binary).output().expect("run ldd");
    let said = text(&out);
    assert!(
        said.contains("not a dynamic executable") || said.contains("statically linked"),
        "ldd {}: {said}",
        binary.display()
    );
    assert!(!said.contains("=>"), "no shared library: {said}");
}

#[test]
fn version_and_a_file_sync_work_in_the_image_root() {
    let Some(binary) = static_binary() else {
        return;
    };
    let root = image_root(&binary, &source("app", "file:///srv/app.git", ""));
    std::fs::create_dir(root.path().join("srv")).unwrap();
    // The repository must be inside the root to be reachable as file:///srv/app.git.
    let repo = GitRepo::new_in(&root.path().join("srv"), "app.git");
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let first = repo.commit("app 1");

    let out = in_root(root.path(), &["--version"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        text(&out)
    );

    let sync = |expect: &str| {
        let out = in_root(root.path(), &["--config", "/agent.toml", "sync"]);
        assert!(out.status.success(), "sync: {}", text(&out));
        let applied = std::fs::read_to_string(root.path().join("deploy/app.yaml"))
            .expect("the directory target was written");
        assert!(
            applied.contains(&format!("version: '{expect}'")),
            "{applied}"
        );
        applied
    };
    assert!(sync("1").contains(&first));
    repo.write("deploy/app.yaml", configmap("app", "2").as_bytes());
    let second = repo.commit("app 2");
    assert!(sync("2").contains(&second));

    let out = in_root(
        root.path(),
        &["--config", "/agent.toml", "status", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let app = &status["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["name"] == "app")
        .expect("source app")
        .clone();
    assert_eq!(app["last_good"], second.as_str(), "{status}");
}

#[test]
fn https_in_the_image_root_trusts_ca_file_or_the_roots_built_in() {
    let Some(binary) = static_binary() else {
        return;
    };
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    repo.commit("app 1");
    let server = GitHttpServer::builder(repo.serve_dir()).tls(true).start();
    let url = server.url_for(repo.name());

    let trusted = image_root(&binary, &source("app", &url, "ca_file = \"/ca.pem\""));
    server.write_ca(trusted.path());
    let out = in_root(trusted.path(), &["--config", "/agent.toml", "sync"]);
    assert!(out.status.success(), "sync with ca_file: {}", text(&out));
    assert!(trusted.path().join("deploy/app.yaml").exists());

    // No ca_file and no CA store in the root: the bundled public roots are used, and they do not vouch for the
    // test CA, so the certificate is refused with the fix named.
    let bare = image_root(&binary, &source("app", &url, ""));
    let out = in_root(bare.path(), &["--config", "/agent.toml", "sync"]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("web PKI roots built into outpost"), "{said}");
    assert!(said.contains("set ca_file"), "{said}");
    assert!(!bare.path().join("deploy/app.yaml").exists());
}

/// In a cluster the agent key can be a Secret: kubelet makes Secret files group-readable, which the key loader
/// refuses, so `keygen --from` takes a private copy into the state directory (what the workloads' init
/// container runs).
#[test]
fn keygen_takes_the_key_from_a_group_readable_secret_file() {
    use std::os::unix::fs::PermissionsExt;
    let original = common::Site::new();
    let out = original.run(&["keygen"]);
    assert!(out.status.success(), "{}", text(&out));
    let public = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();

    let site = common::Site::new();
    let secret = site.dir.path().join("secret-agent.key");
    std::fs::copy(original.state_dir().join("agent.key"), &secret).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o440)).unwrap();
    let from = secret.to_str().unwrap();
    let out = site.run(&["keygen", "--from", from]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&public),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("imported"), "{}", text(&out));
    let mode = std::fs::metadata(site.state_dir().join("agent.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the copy is private");
    // Again: nothing to do. Without --from: the imported key is the agent's key.
    let again = site.run(&["keygen", "--from", from]);
    assert!(
        text(&again).contains("the same as the one given"),
        "{}",
        text(&again)
    );
    let plain = site.run(&["keygen"]);
    assert!(String::from_utf8_lossy(&plain.stdout).starts_with(&public));

    // An optional Secret that was not created: the state directory's own key is made and kept.
    let fresh = common::Site::new();
    let missing = fresh.dir.path().join("no-such.key");
    let out = fresh.run(&["keygen", "--from", missing.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("does not exist") && text(&out).contains("created"),
        "{}",
        text(&out)
    );

    // Something that is not a key: refused, naming the file and what to give, and the current key stays.
    std::fs::write(&secret, "not a key\n").unwrap();
    let out = site.run(&["keygen", "--from", from]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("secret-agent.key") && text(&out).contains("PKCS#8"),
        "{}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&site.run(&["keygen"]).stdout).starts_with(&public));
}
