//! kubectl accepts every manifest: against the API test double always, and against a real cluster when
//! `OUTPOST_E2E_KUBECONFIG` is set.

use super::*;

/// Runs kubectl with `kubeconfig` and a private HOME (for its cache); returns success and the output.
fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", home)
        .output()
        .expect("run kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn kubectl_missing() -> bool {
    if Path::new(KUBECTL).exists() {
        return false;
    }
    println!("skipped: {KUBECTL} is not installed");
    true
}

fn dry_run_every_file(kubeconfig: &Path, home: &Path, extra: &[&str]) {
    for file in manifest_files() {
        let path = file.to_string_lossy();
        let mut args = vec!["apply", "-f", &path];
        args.extend_from_slice(extra);
        let (ok, text) = kubectl(kubeconfig, home, &args);
        assert!(ok, "kubectl {args:?} failed:\n{text}");
    }
}

#[test]
fn kubectl_accepts_every_file_against_the_double() {
    if kubectl_missing() {
        return;
    }
    let double = KubeDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = double.write_kubeconfig(dir.path());

    dry_run_every_file(&kubeconfig, dir.path(), &["--dry-run=client"]);
    let manifests = manifests_dir();
    let (ok, text) = kubectl(
        &kubeconfig,
        dir.path(),
        &[
            "apply",
            "--dry-run=client",
            "-k",
            &manifests.to_string_lossy(),
        ],
    );
    assert!(ok, "kubectl apply -k --dry-run=client failed:\n{text}");

    // A server-side dry run stores nothing, so the namespaces the files live in must exist first.
    for ns in ["outpost-system", "tenant-a"] {
        let (status, body) = double.request(
            "POST",
            "/api/v1/namespaces",
            Some("application/json"),
            Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})),
        );
        assert_eq!(status, 201, "create namespace {ns}: {body}");
    }
    dry_run_every_file(
        &kubeconfig,
        dir.path(),
        &["--dry-run=server", "--server-side"],
    );
    assert!(
        double
            .get("/apis/apps/v1/namespaces/outpost-system/deployments/outpost")
            .is_none(),
        "a dry run must store nothing"
    );
}

/// Against a real cluster: creates `outpost-system` and `tenant-a` if missing (and deletes what it created),
/// then dry-runs every file on the server, which runs the real admission chain (Pod Security included).
#[test]
fn kubectl_accepts_every_file_against_a_real_cluster() {
    let Some(kubeconfig) = std::env::var_os("OUTPOST_E2E_KUBECONFIG") else {
        println!("skipped: OUTPOST_E2E_KUBECONFIG is not set");
        return;
    };
    if kubectl_missing() {
        return;
    }
    let kubeconfig = PathBuf::from(kubeconfig);
    let home = tempfile::tempdir().unwrap();
    let mut created = Vec::new();
    for ns in ["outpost-system", "tenant-a"] {
        if !kubectl(&kubeconfig, home.path(), &["get", "namespace", ns]).0 {
            let (ok, text) = kubectl(&kubeconfig, home.path(), &["create", "namespace", ns]);
            assert!(ok, "create namespace {ns}:\n{text}");
            created.push(ns);
        }
    }
    let result = std::panic::catch_unwind(|| {
        dry_run_every_file(
            &kubeconfig,
            home.path(),
            &["--dry-run=server", "--server-side"],
        );
    });
    for ns in created {
        kubectl(
            &kubeconfig,
            home.path(),
            &["delete", "namespace", ns, "--wait=false"],
        );
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
