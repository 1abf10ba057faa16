//! The container image itself: built from `packaging/Containerfile` (the `BINARY_FROM=context` path, which
//! needs no registry) with buildah, Debian's daemonless builder, in a storage of the test's own. The image's
//! config must run `/outpost run` as 65532, its filesystem must hold the binary and the user and nothing else,
//! and the binary must sync a `file://` source inside it.

use super::*;

/// buildah with a storage of its own under `dir`, so the test leaves nothing in /var/lib/containers.
fn buildah(tool: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(tool);
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .args(["--storage-driver", "vfs"]);
    cmd
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "buildah {what}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_image_builds_and_syncs_as_its_user_with_nothing_else_inside() {
    let Some(binary) = static_binary() else {
        return;
    };
    let tool = require_tool("buildah", "apt-get install buildah (scripts/test does)");
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: building the image with buildah's chroot isolation needs root");
        return;
    }
    // The build context: the files the final stage copies, with the static binary where the context stage
    // expects the release build.
    let context = tempfile::tempdir().unwrap();
    let c = context.path();
    for file in [
        "packaging/Containerfile",
        "packaging/image/passwd",
        "packaging/image/group",
    ] {
        std::fs::create_dir_all(c.join(file).parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(file), c.join(file)).unwrap();
    }
    let in_context = c.join(format!("target/{MUSL}/release/outpost"));
    std::fs::create_dir_all(in_context.parent().unwrap()).unwrap();
    std::fs::copy(&binary, &in_context).unwrap();

    let storage = tempfile::tempdir().unwrap();
    let s = storage.path();
    let tag = "localhost/outpost:install-test";
    ok(
        buildah(&tool, s)
            .args([
                "bud",
                "--isolation",
                "chroot",
                "--build-arg",
                "BINARY_FROM=context",
            ])
            .arg("-f")
            .arg(c.join("packaging/Containerfile"))
            .args(["-t", tag])
            .arg(c)
            .output()
            .unwrap(),
        "bud",
    );
    let inspected = ok(
        buildah(&tool, s)
            .args(["inspect", "--type", "image"])
            .arg(tag)
            .output()
            .unwrap(),
        "inspect",
    );
    let inspected: serde_json::Value = serde_json::from_str(&inspected).expect("inspect JSON");
    let config = &inspected["OCIv1"]["config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/outpost"]),
        "{config}"
    );
    assert_eq!(config["Cmd"], serde_json::json!(["run"]), "{config}");

    let container = ok(
        buildah(&tool, s).args(["from", tag]).output().unwrap(),
        "from",
    );
    let version = ok(
        buildah(&tool, s)
            .args([
                "run",
                "--isolation",
                "chroot",
                &container,
                "--",
                "/outpost",
                "--version",
            ])
            .output()
            .unwrap(),
        "run --version",
    );
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");

    // The image's own filesystem: what the Containerfile put there, plus the mount points any runtime adds.
    let mount = PathBuf::from(ok(
        buildah(&tool, s)
            .args(["mount", &container])
            .output()
            .unwrap(),
        "mount",
    ));
    let mut top: Vec<String> = std::fs::read_dir(&mount)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let runtime_mounts = ["dev", "proc", "run", "sys", "tmp"];
    top.retain(|name| !runtime_mounts.contains(&name.as_str()));
    assert_eq!(top, ["etc", "outpost"], "nothing else in the image");
    let passwd = std::fs::read_to_string(mount.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("outpost:x:65532:65532:"), "{passwd}");

    // A file:// sync inside the image as its user, with a state and a target folder as the workloads mount them.
    std::fs::create_dir(mount.join("srv")).unwrap();
    let repo = GitRepo::new_in(&mount.join("srv"), "app.git");
    repo.write("deploy/app.yaml", configmap("app", "7").as_bytes());
    let commit = repo.commit("app 7");
    for dir in ["state", "deploy"] {
        std::fs::create_dir(mount.join(dir)).unwrap();
        std::os::unix::fs::chown(mount.join(dir), Some(65532), Some(65532)).unwrap();
    }
    let agent = format!(
        "[agent]\nid = \"image\"\nstate_dir = \"/state\"\n\n{}",
        source("app", "file:///srv/app.git", "")
    );
    std::fs::write(mount.join("agent.toml"), agent).unwrap();
    let out = in_root(&mount, &["--config", "/agent.toml", "sync"]);
    assert!(out.status.success(), "sync in the image: {}", text(&out));
    let applied = std::fs::read_to_string(mount.join("deploy/app.yaml")).unwrap();
    assert!(
        applied.contains(&commit) && applied.contains("version: '7'"),
        "{applied}"
    );

    let _ = buildah(&tool, s).args(["umount", &container]).output();
    let _ = buildah(&tool, s).args(["rm", &container]).output();
}
