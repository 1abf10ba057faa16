//! The kustomize oracle: every case under `fixtures/kustomize/` is built by Outpost and by `kubectl kustomize`
//! (kubectl 1.32, kustomize v5.5), and the two outputs must be the same objects.
//!
//! A case folder is a small repository. `ROOT` (optional) names the folder to build, default the case folder
//! itself. `ERROR` (optional) marks a case that must fail: its first line is `kubectl-fails` or
//! `kubectl-succeeds` (what kustomize does with the same input), the other lines are texts Outpost's error must
//! contain. Without kubectl on the machine the comparison is skipped with a message; Outpost's own checks still
//! run.
//!
//! Both sides are compared as a YAML 1.1 reader sees them (PyYAML, like the Go reader of kubectl, k3s and
//! RKE2): kustomize's printed output, and Outpost's objects as the directory target writes them. A generator's
//! `generated: "yes"` label that either side printed plain would come back a boolean and fail the case.

use std::path::{Path, PathBuf};
use std::process::Command;

use outpost_agent::bundle::kustomize;
use outpost_agent::config::Limits;
use outpost_agent::deploy::directory::emit;
use outpost_agent::revision::RepoFiles;
use serde_json::Value;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kustomize")
}

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn outpost_build(case: &Path, root: &str) -> Result<Vec<Value>, String> {
    let limits = Limits::default();
    let files = RepoFiles::from_dir(case, &limits).map_err(|e| e.to_string())?;
    kustomize::build(&files, root, &limits).map_err(|e| e.to_string())
}

fn kubectl_build(dir: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    outpost_tests::pyyaml::load_all(&text)
}

/// Outpost's objects as the directory target writes them, read back by the same YAML 1.1 reader.
fn as_written(objects: &[Value]) -> Result<Vec<Value>, String> {
    let text: String = objects
        .iter()
        .map(|o| format!("---\n{}", emit::document(o)))
        .collect();
    outpost_tests::pyyaml::load_all(&text)
}

fn canonical(objects: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = objects
        .iter()
        .map(|o| serde_json::to_string_pretty(o).unwrap_or_default())
        .collect();
    out.sort();
    out
}

/// Runs one case; `Err` explains the difference.
fn check(case: &Path, kubectl: bool) -> Result<(), String> {
    let root = std::fs::read_to_string(case.join("ROOT"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let root = if root == "." { String::new() } else { root };
    let dir = case.join(&root);
    let ours = outpost_build(case, &root);
    if let Ok(spec) = std::fs::read_to_string(case.join("ERROR")) {
        let mut lines = spec.lines();
        let kube_expect = lines.next().unwrap_or("").trim().to_string();
        let err = match ours {
            Ok(_) => return Err("Outpost built it, but the case expects an error".into()),
            Err(e) => e,
        };
        for want in lines.filter(|l| !l.trim().is_empty()) {
            if !err.contains(want.trim()) {
                return Err(format!("error {err:?} does not contain {want:?}"));
            }
        }
        if kubectl {
            let theirs = kubectl_build(&dir);
            match (kube_expect.as_str(), &theirs) {
                ("kubectl-fails", Ok(_)) => {
                    return Err("kubectl succeeded but the case says it fails".into())
                }
                ("kubectl-succeeds", Err(e)) => return Err(format!("kubectl failed: {e}")),
                _ => {}
            }
        }
        return Ok(());
    }
    let ours = ours.map_err(|e| format!("Outpost failed: {e}"))?;
    if !kubectl {
        return Ok(());
    }
    let theirs = kubectl_build(&dir).map_err(|e| format!("kubectl failed: {e}"))?;
    let ours = as_written(&ours)?;
    let (a, b) = (canonical(&ours), canonical(&theirs));
    if a != b {
        let only_ours: Vec<&String> = a.iter().filter(|x| !b.contains(x)).collect();
        let only_theirs: Vec<&String> = b.iter().filter(|x| !a.contains(x)).collect();
        return Err(format!(
            "outputs differ\n--- only in Outpost:\n{}\n--- only in kubectl:\n{}",
            only_ours
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            only_theirs
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    let names = |o: &[Value]| -> Vec<String> {
        o.iter()
            .map(|v| format!("{} {}", v["kind"], v["metadata"]["name"]))
            .collect()
    };
    if names(&ours) != names(&theirs) {
        return Err(format!(
            "same objects, different order:\n Outpost: {:?}\n kubectl: {:?}",
            names(&ours),
            names(&theirs)
        ));
    }
    Ok(())
}

#[test]
fn outpost_builds_what_kubectl_kustomize_builds() {
    let kubectl = kubectl_available();
    if !kubectl {
        eprintln!("SKIP: kubectl not found on PATH; comparing with `kubectl kustomize` is skipped (Outpost's own expectations still run)");
    }
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("fixtures/kustomize exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 40,
        "the corpus has {} cases, fewer than 40",
        cases.len()
    );
    let only = std::env::var("KUSTOMIZE_CASE").ok();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        if let Err(e) = check(case, kubectl) {
            failures.push(format!("== {name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Outpost can deploy itself from its own packaging folder, and builds it as kubectl does.
#[test]
fn the_packaged_kustomization_builds_like_kubectl() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let ours = outpost_build(&case, "kubernetes").expect("packaging/kubernetes builds");
    assert!(!ours.is_empty());
    if !kubectl_available() {
        eprintln!("SKIP: kubectl not found on PATH; comparing packaging/kubernetes with `kubectl kustomize` is skipped");
        return;
    }
    let theirs =
        kubectl_build(&case.join("kubernetes")).expect("kubectl builds packaging/kubernetes");
    assert_eq!(canonical(&ours), canonical(&theirs));
}
