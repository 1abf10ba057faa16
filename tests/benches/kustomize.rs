//! Kustomize build speed: two 1,000-object overlays built by Outpost and by `kubectl kustomize`, in the same run,
//! on the same files. Run with `cargo bench -p outpost-tests --bench kustomize`; prints both medians and the
//! ratio for each.
//!
//! `overlay` uses the costly parts: a base folder of 600 files, namespace, prefix, labels with selectors,
//! annotations, images, replicas, a generator with reference updates, and strategic merge and JSON patches that
//! target every Deployment. `overlay-replacements` is replacements-heavy: one replacement per ConfigMap into its
//! Deployment's env (by `[name=...]` paths), and one with a delimiter into every Deployment's image. Outpost's
//! time includes reading the files from disk, as kubectl's does.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_agent::bundle::kustomize;
use outpost_agent::config::Limits;
use outpost_agent::revision::RepoFiles;

const DEPLOYMENTS: usize = 400;
const CONFIGMAPS: usize = 199;
const RUNS: usize = 7;
/// kubectl takes seconds per build here; three runs give a median without a long wait.
const KUBECTL_RUNS: usize = 3;

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// 400 Deployments + 400 Services + 199 ConfigMaps + 1 generated ConfigMap = 1,000 objects.
fn fixture(root: &Path) {
    let mut resources = String::from("resources:\n");
    for i in 0..DEPLOYMENTS {
        write(
            root,
            &format!("base/app-{i:03}.yaml"),
            &format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  labels:\n    app: app-{i}\n    tier: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: app-{i}\n  template:\n    metadata:\n      labels:\n        app: app-{i}\n    spec:\n      containers:\n      - name: main\n        image: registry.example.com/shop/app:1.0.{i}\n        ports:\n        - containerPort: 8080\n          name: http\n        env:\n        - name: INDEX\n          value: \"{i}\"\n        envFrom:\n        - configMapRef:\n            name: shared\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\nspec:\n  selector:\n    app: app-{i}\n  ports:\n  - port: 80\n    targetPort: http\n"
            ),
        );
        resources.push_str(&format!("- app-{i:03}.yaml\n"));
    }
    let mut cms = String::new();
    for i in 0..CONFIGMAPS {
        cms.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{i}\ndata:\n  key: value-{i}\n  other: \"{i}\"\n"
        ));
    }
    write(root, "base/configmaps.yaml", &cms);
    resources.push_str("- configmaps.yaml\n");
    write(root, "base/kustomization.yaml", &resources);
    write(
        root,
        "overlay/kustomization.yaml",
        "namespace: site-042\nnamePrefix: eu-\nresources:\n- ../base\nlabels:\n- pairs:\n    site: \"042\"\n  includeSelectors: true\ncommonAnnotations:\n  owner: platform\nimages:\n- name: registry.example.com/shop/app\n  newTag: 2.0.0\nreplicas:\n- name: app-1\n  count: 3\nconfigMapGenerator:\n- name: shared\n  literals:\n  - REGION=eu-west\n  - SITE=042\npatches:\n- target:\n    kind: Deployment\n  patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: any\n    spec:\n      template:\n        spec:\n          containers:\n          - name: main\n            resources:\n              limits:\n                memory: 256Mi\n            env:\n            - name: MODE\n              value: edge\n- target:\n    kind: Deployment\n    labelSelector: tier=web\n  patch: |-\n    - op: add\n      path: /spec/revisionHistoryLimit\n      value: 2\n",
    );
    let mut replacements = String::from(
        "resources:\n- ../base\nconfigMapGenerator:\n- name: release\n  literals:\n  - TAG=3.1.4\nreplacements:\n- source:\n    kind: ConfigMap\n    name: release\n    fieldPath: data.TAG\n  targets:\n  - select:\n      kind: Deployment\n    fieldPaths:\n    - spec.template.spec.containers.[name=main].image\n    options:\n      delimiter: ':'\n      index: 1\n",
    );
    for i in 0..CONFIGMAPS {
        replacements.push_str(&format!(
            "- source:\n    kind: ConfigMap\n    name: settings-{i}\n    fieldPath: data.key\n  targets:\n  - select:\n      kind: Deployment\n      name: app-{i}\n    fieldPaths:\n    - spec.template.spec.containers.[name=main].env.[name=INDEX].value\n"
        ));
    }
    write(
        root,
        "overlay-replacements/kustomization.yaml",
        &replacements,
    );
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    for overlay in ["overlay", "overlay-replacements"] {
        measure(dir.path(), overlay, kubectl);
    }
}

fn measure(root: &Path, overlay: &str, kubectl: bool) {
    let limits = Limits::default();
    let mut ours = Vec::new();
    let mut count = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let files = RepoFiles::from_dir(root, &limits).unwrap();
        let objects = kustomize::build(&files, overlay, &limits).unwrap();
        ours.push(start.elapsed());
        count = objects.len();
    }
    let ours = median(ours);
    println!("kustomize build of the {count}-object {overlay}");
    println!(
        "  outpost:           {:>8.1} ms (median of {RUNS})",
        ours.as_secs_f64() * 1e3
    );
    if !kubectl {
        println!("  kubectl kustomize: SKIPPED (kubectl not found on PATH)");
        return;
    }
    let mut theirs = Vec::new();
    for _ in 0..KUBECTL_RUNS {
        let start = Instant::now();
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(root.join(overlay))
            .output()
            .unwrap();
        theirs.push(start.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let theirs = median(theirs);
    println!(
        "  kubectl kustomize: {:>8.1} ms (median of {KUBECTL_RUNS})",
        theirs.as_secs_f64() * 1e3
    );
    println!(
        "  outpost is {:.1}x faster (target: at least 5x)",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}
