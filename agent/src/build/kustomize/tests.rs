use serde_json::json;

use super::files::join;
use super::*;

fn repo(files: &[(&str, &str)]) -> RepoFiles {
    let mut r = RepoFiles::new(&Limits::default());
    for (p, c) in files {
        r.insert(p, Entry::File(c.as_bytes().to_vec()));
    }
    r
}

#[test]
fn hash_matches_kustomize() {
    // `kubectl kustomize` names this ConfigMap app-config-kh7f5d858d.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
        "data": {"A": "1", "B": "<x&y>"}});
    assert_eq!(refs::content_hash(&cm), "kh7f5d858d");
}

#[test]
fn references_resolve_lexically_and_never_leave_the_repository() {
    assert_eq!(join("apps/prod", "../base").as_deref(), Some("apps/base"));
    assert_eq!(join("apps", "../../etc"), None);
    assert_eq!(join("", "/etc/passwd"), None);
}

#[test]
fn cycle_is_named() {
    let files = repo(&[
        ("a/kustomization.yaml", "resources: [../b]\n"),
        ("b/kustomization.yaml", "resources: [../a]\n"),
    ]);
    let err = build(&files, "a", &Limits::default()).unwrap_err();
    assert_eq!(err.to_string().contains("a -> b -> a"), true, "{err}");
}

#[test]
fn unsupported_fields_are_refused_by_name() {
    let files = repo(&[("k/kustomization.yaml", "helmCharts:\n- name: x\n")]);
    let err = build(&files, "k", &Limits::default()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("k/kustomization.yaml") && text.contains("helmCharts"),
        "{text}"
    );
}
