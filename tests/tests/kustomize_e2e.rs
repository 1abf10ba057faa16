//! The real `outpost` binary on a kustomize source: an overlay with site variables is built and applied, `render`
//! shows the built result, and a broken kustomization leaves the last good revision applied.

mod common;

use common::Site;
use outpost_tests::GitRepo;

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: ${replicas:=1}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        envFrom:
        - configMapRef: {name: web-env}
";

fn fleet_repo() -> GitRepo {
    let repo = GitRepo::new();
    repo.write("apps/base/deploy.yaml", DEPLOY.as_bytes());
    repo.write(
        "apps/base/kustomization.yaml",
        b"resources:\n- deploy.yaml\nconfigMapGenerator:\n- name: web-env\n  literals:\n  - SITE=${site}\n  - REGION=${region}\n  - AGENT=${OUTPOST_AGENT_ID}\n  - SOURCE=${OUTPOST_SOURCE}\n  - LITERAL=$${site}\n",
    );
    repo.write(
        "clusters/site/kustomization.yaml",
        b"namePrefix: site-\nresources:\n- ../../apps/base\n",
    );
    repo
}

fn site_for(repo: &GitRepo) -> Site {
    let mut site = Site::new();
    site.agent_extra = "vars = { site = \"042\", region = \"eu-west\" }".into();
    site.source(
        "fleet",
        &repo.file_url(),
        "branch = \"main\"",
        "clusters/site",
        "vars = { region = \"eu-north\", replicas = \"3\" }",
    );
    site
}

#[test]
fn overlay_with_variables_is_applied_and_rendered() {
    let repo = fleet_repo();
    repo.commit("overlay");
    let site = site_for(&repo);
    site.sync_ok();
    let objects = site.applied_objects("fleet");
    let deploy = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("deployment applied");
    assert_eq!(deploy["metadata"]["name"], "site-web");
    assert_eq!(deploy["spec"]["replicas"], 3, "source vars win, typed");
    let cm = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .expect("configmap applied");
    let name = cm["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("site-web-env-"), "{name}");
    let env_ref =
        &deploy["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"];
    assert_eq!(env_ref, name, "the reference follows the generated name");
    assert_eq!(cm["data"]["SITE"], "042");
    assert_eq!(cm["data"]["REGION"], "eu-north");
    assert_eq!(cm["data"]["AGENT"], "test-site");
    assert_eq!(cm["data"]["SOURCE"], "fleet");
    assert_eq!(cm["data"]["LITERAL"], "${site}");

    let out = site.run(&["render", "--source", "fleet"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("name: site-web") && text.contains(name),
        "{text}"
    );
}

#[test]
fn changed_variables_rebuild_the_same_commit() {
    let repo = fleet_repo();
    repo.commit("overlay");
    let mut site = site_for(&repo);
    site.sync_ok();
    let site_value = |site: &Site| {
        site.applied_objects("fleet")
            .into_iter()
            .find(|o| o["kind"] == "ConfigMap")
            .map(|cm| cm["data"]["SITE"].clone())
    };
    assert_eq!(site_value(&site), Some("042".into()));
    site.agent_extra = "vars = { site = \"043\", region = \"eu-west\" }".into();
    site.sync_ok();
    assert_eq!(
        site_value(&site),
        Some("043".into()),
        "no new commit, new variables"
    );
}

#[test]
fn broken_kustomization_keeps_last_good_applied() {
    let repo = fleet_repo();
    let good = repo.commit("overlay");
    let site = site_for(&repo);
    site.sync_ok();
    assert_eq!(
        site.applied_revision("fleet").as_deref(),
        Some(good.as_str())
    );

    repo.write(
        "clusters/site/kustomization.yaml",
        b"namePrefix: site-\nresources:\n- ../../apps/base\n- ../../../../etc\n",
    );
    let bad = repo.commit("escape");
    let out = site.sync_fails();
    assert!(
        out.contains("clusters/site/kustomization.yaml") && out.contains("outside the repository"),
        "{out}"
    );
    assert_eq!(
        site.applied_revision("fleet").as_deref(),
        Some(good.as_str())
    );
    let status = site.source_status("fleet");
    assert_eq!(status["last_good"], good.as_str());
    assert_eq!(status["fetched"], bad.as_str());

    // An undefined variable is refused the same way, naming the object and the variable.
    repo.write(
        "clusters/site/kustomization.yaml",
        b"namePrefix: site-\nresources:\n- ../../apps/base\ncommonAnnotations:\n  owner: ${owner}\n",
    );
    repo.commit("undefined variable");
    let out = site.sync_fails();
    assert!(
        out.contains("\"owner\"") && out.contains("site-web"),
        "{out}"
    );
    assert_eq!(
        site.applied_revision("fleet").as_deref(),
        Some(good.as_str())
    );
}

#[test]
fn a_kustomize_build_reads_a_bounded_repository() {
    let repo = fleet_repo();
    // 20 files of 1,000 bytes: each under the 1 KiB file limit, together over the 16 KiB read budget.
    for i in 0..20 {
        repo.write(&format!("docs/page-{i}.md"), &[b'x'; 1000]);
    }
    repo.commit("large docs");
    let mut site = site_for(&repo);
    site.agent_extra.push_str("\nmax_file_size = \"1KiB\"");
    let out = site.sync_fails();
    assert!(
        out.contains("bytes of files") && out.contains("max_file_size"),
        "{out}"
    );
}

/// A source without vars (and without `substitute = true`) is applied as built: a shell script's `${FRONTEND}`
/// and `${site}` stay as written, even with agent-level vars set (substitution is opt-in, as with Flux).
#[test]
fn a_source_without_vars_is_not_substituted() {
    let repo = fleet_repo();
    repo.write(
        "apps/base/script.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: script\ndata:\n  run.sh: exec app --frontend ${FRONTEND}\n",
    );
    repo.write(
        "apps/base/kustomization.yaml",
        b"resources:\n- deploy.yaml\n- script.yaml\nconfigMapGenerator:\n- name: web-env\n  literals:\n  - SITE=${site}\n",
    );
    repo.commit("script");
    let mut site = Site::new();
    site.agent_extra = "vars = { site = \"042\" }".into();
    site.source(
        "fleet",
        &repo.file_url(),
        "branch = \"main\"",
        "clusters/site",
        "",
    );
    site.sync_ok();
    let objects = site.applied_objects("fleet");
    let data = |name: &str| {
        objects
            .iter()
            .find(|o| {
                o["kind"] == "ConfigMap"
                    && o["metadata"]["name"].as_str().unwrap().starts_with(name)
            })
            .map(|o| o["data"].clone())
            .unwrap_or_else(|| panic!("{name} applied"))
    };
    assert_eq!(
        data("site-script")["run.sh"],
        "exec app --frontend ${FRONTEND}"
    );
    assert_eq!(data("site-web-env")["SITE"], "${site}");
}
