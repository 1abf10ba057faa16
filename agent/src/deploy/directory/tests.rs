//! The directory target against real files in a temp dir: writing, drift, layouts, removal, order.

use super::*;
use serde_json::json;

fn bundle() -> Bundle {
    Bundle::new(vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "annotations": {"outpost.dev/apply": "ignore"}}}),
    ])
}

#[tokio::test]
async fn writes_once_restores_edits_and_removes_only_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = DirectoryTarget::new(dir.path().join("manifests"), DirectoryLayout::File);
    let applied = t.apply("web", "abc", &bundle()).await.unwrap();
    assert_eq!(
        applied,
        Applied {
            object_count: 1,
            changed: true,
            ..Applied::default()
        }
    );
    let text = std::fs::read_to_string(t.file_for("web")).unwrap();
    assert!(text.starts_with("# Managed by outpost: source \"web\", revision abc, sha256:"));
    let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 1, "the ignored Secret is not written");
    assert_eq!(docs[0]["metadata"]["labels"]["outpost.dev/source"], "web");
    assert_eq!(
        docs[0]["metadata"]["annotations"]["outpost.dev/revision"],
        "abc"
    );

    assert!(
        !t.apply("web", "abc", &bundle()).await.unwrap().changed,
        "same content: nothing written"
    );
    assert!(t.is_intact("web", "abc"));
    assert!(!t.is_intact("web", "other-revision"));
    std::fs::write(t.file_for("web"), "edited by hand").unwrap();
    assert!(
        !t.is_intact("web", "abc"),
        "an edit is seen without reading the file"
    );
    assert!(
        t.apply("web", "abc", &bundle()).await.unwrap().changed,
        "drift is corrected"
    );
    assert_eq!(std::fs::read_to_string(t.file_for("web")).unwrap(), text);

    std::fs::write(t.file_for("other"), "kind: ConfigMap\n").unwrap();
    assert!(!t.remove("other").await.unwrap(), "not ours");
    assert!(t.file_for("other").exists());
    assert!(t.remove("web").await.unwrap());
    assert!(!t.file_for("web").exists());
}

#[tokio::test]
async fn unwritable_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = DirectoryTarget::new(file, DirectoryLayout::File)
        .apply("web", "abc", &bundle())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot write web.yaml"), "{err}");
}

fn object(api_version: &str, kind: &str, name: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}})
}

fn written(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn objects_come_in_the_kubernetes_target_stage_order_and_stay_in_order_within_a_kind() {
    let bundle = Bundle::new(vec![
        object("apps/v1", "Deployment", "web"),
        object("example.com/v1", "Widget", "w"),
        object("v1", "ConfigMap", "z"),
        object(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            "hook",
        ),
        object("v1", "ConfigMap", "a"),
        object(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "widgets.example.com",
        ),
        object("v1", "Namespace", "team"),
        object("v1", "ServiceAccount", "sa"),
    ]);
    let names: Vec<String> = written(&render("web", "abc", &bundle))
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "Namespace/team",
            "CustomResourceDefinition/widgets.example.com",
            "ServiceAccount/sa",
            "ConfigMap/z",
            "ConfigMap/a",
            "Deployment/web",
            "Widget/w",
            "ValidatingWebhookConfiguration/hook",
        ]
    );
}

#[test]
fn quoted_values_of_the_source_stay_strings() {
    let bundle = Bundle::new(vec![json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"generated": "yes"}},
        "data": {"a": "yes", "b": "off", "c": "1:20", "d": "2001-12-14", "e": "0o17", "tilde": "~"},
    })]);
    let text = render("web", "abc", &bundle);
    for line in [
        "generated: 'yes'",
        "a: 'yes'",
        "b: 'off'",
        "c: '1:20'",
        "d: '2001-12-14'",
        "e: '0o17'",
        "tilde: '~'",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
}

#[tokio::test]
async fn kustomization_layout_writes_a_folder_per_source_and_removes_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests.d");
    let t = DirectoryTarget::new(manifests.clone(), DirectoryLayout::Kustomization);
    assert!(t.apply("web", "abc", &bundle()).await.unwrap().changed);
    let file = manifests.join("web/web.yaml");
    assert_eq!(t.file_for("web"), file);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        render("web", "abc", &bundle()),
        "the manifest file is what `outpost render` prints"
    );
    let kustomization = std::fs::read_to_string(manifests.join("web/kustomization.yaml")).unwrap();
    let k: Value = serde_yaml_ng::from_str(&kustomization).unwrap();
    assert_eq!(
        k,
        json!({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["web.yaml"]})
    );
    assert!(kustomization.starts_with("# Managed by outpost: source \"web\"\n"));
    assert!(!t.apply("web", "abc", &bundle()).await.unwrap().changed);
    assert!(t.is_intact("web", "abc"));

    std::fs::remove_file(manifests.join("web/kustomization.yaml")).unwrap();
    assert!(
        !t.is_intact("web", "abc"),
        "a deleted kustomization is drift"
    );
    assert!(t.apply("web", "abc", &bundle()).await.unwrap().changed);
    assert_eq!(
        std::fs::read_to_string(manifests.join("web/kustomization.yaml")).unwrap(),
        kustomization
    );

    // A file of the operator's beside ours stays, and so does the folder holding it.
    std::fs::write(manifests.join("web/notes.txt"), "mine").unwrap();
    assert!(t.remove("web").await.unwrap());
    assert!(!file.exists() && !manifests.join("web/kustomization.yaml").exists());
    assert!(manifests.join("web/notes.txt").exists());
    std::fs::remove_file(manifests.join("web/notes.txt")).unwrap();
    assert!(t.apply("web", "abc", &bundle()).await.unwrap().changed);
    assert!(t.remove("web").await.unwrap());
    assert!(!manifests.join("web").exists(), "an emptied folder goes");

    // A kustomization someone else wrote for a folder of that name is not ours to remove.
    std::fs::create_dir_all(manifests.join("app")).unwrap();
    std::fs::write(
        manifests.join("app/kustomization.yaml"),
        "resources: [x.yaml]\n",
    )
    .unwrap();
    assert!(!t.remove("app").await.unwrap());
    assert!(manifests.join("app/kustomization.yaml").exists());
}

#[tokio::test]
async fn a_change_of_layout_takes_away_the_other_layouts_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = DirectoryTarget::new(dir.path().to_path_buf(), DirectoryLayout::File);
    let folder = DirectoryTarget::new(dir.path().to_path_buf(), DirectoryLayout::Kustomization);
    file.apply("web", "abc", &bundle()).await.unwrap();
    assert!(dir.path().join("web.yaml").exists());
    assert!(folder.apply("web", "abc", &bundle()).await.unwrap().changed);
    assert!(
        !dir.path().join("web.yaml").exists(),
        "one copy of the objects, not two"
    );
    assert!(dir.path().join("web/web.yaml").exists());
    assert!(file.apply("web", "abc", &bundle()).await.unwrap().changed);
    assert!(!dir.path().join("web").exists());
    assert!(dir.path().join("web.yaml").exists());
    // The removal of a source whose layout is not known (it left the config) finds both.
    folder.apply("web", "abc", &bundle()).await.unwrap();
    std::fs::write(dir.path().join("web.yaml"), render("web", "abc", &bundle())).unwrap();
    assert!(file.remove("web").await.unwrap());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
