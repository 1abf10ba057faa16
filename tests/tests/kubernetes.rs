//! The Kubernetes target end to end: the real `outpost` binary, a real Git repository, and a Kubernetes API.
//!
//! The API is the test double built from kube-apiserver v1.32's recorded answers, or a real cluster when
//! `OUTPOST_E2E_KUBECONFIG` names a kubeconfig: the same scenarios run against both. Each test works in its own
//! namespace (and CRD group), so tests run in parallel on one real cluster and clean up after themselves. The few
//! scenarios that need to switch the API server off or deny a permission run against the double only, and say so.

#[path = "kubernetes/cluster.rs"]
mod cluster;
mod common;
#[path = "kubernetes/owners.rs"]
mod owners;
#[path = "kubernetes/sops.rs"]
mod sops;

use std::time::Duration;

use cluster::{deployment, repo_with, Cluster};
use common::{configmap, wait_until};
use outpost_agent::deploy::kube::owner::Owner;
use serde_json::json;

#[test]
fn create_update_prune_and_a_no_op_cycle() {
    let c = Cluster::start("basic");
    let repo = repo_with(
        &c,
        &[
            ("a.yaml", configmap("a", "1")),
            ("b.yaml", configmap("b", "1")),
        ],
    );
    let site = c.site(&repo, "prune = true");
    site.sync_ok();
    let a = c.cm("a").expect("ConfigMap a created");
    assert_eq!(
        a["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "outpost"
    );
    assert_eq!(a["metadata"]["labels"]["outpost.dev/source"], "apps");
    let owner = Owner::new(&c.ns, "apps");
    assert_eq!(
        a["metadata"]["labels"]["outpost.dev/owner"],
        owner.id.as_str()
    );
    assert_eq!(
        a["metadata"]["annotations"]["outpost.dev/agent"],
        c.ns.as_str()
    );
    assert_eq!(
        a["metadata"]["annotations"]["outpost.dev/revision"],
        repo.head().as_str()
    );
    assert!(c.cm("b").is_some());

    repo.write("a.yaml", configmap("a", "2").as_bytes());
    repo.remove("b.yaml");
    repo.commit("update a, remove b");
    site.sync_ok();
    assert_eq!(c.cm_value("a").as_deref(), Some("2"));
    assert!(c.cm("b").is_none(), "b was pruned");

    // Unchanged: nothing is written; the drift check is one metadata-only list per kind.
    let rv = c.cm("a").unwrap()["metadata"]["resourceVersion"].clone();
    if let Some(d) = c.double() {
        d.reset_requests();
    }
    site.sync_ok();
    assert_eq!(c.cm("a").unwrap()["metadata"]["resourceVersion"], rv);
    if let Some(d) = c.double() {
        let requests = d.requests();
        let writes: Vec<_> = requests.iter().filter(|r| r.method != "GET").collect();
        assert!(writes.is_empty(), "a no-op cycle wrote: {writes:?}");
        assert_eq!(
            requests.len(),
            2,
            "one list per kind (Namespace, ConfigMap): {requests:?}"
        );
        assert!(
            requests.iter().all(|r| r
                .path
                .contains(&format!("labelSelector=outpost.dev%2Fowner%3D{}", owner.id))
                && r.accept.contains("PartialObjectMetadataList")),
            "{requests:?}"
        );
    }
}

#[test]
fn a_crd_and_its_resource_and_a_namespace_and_its_objects_in_one_revision() {
    let c = Cluster::start("crd");
    let crd = format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{g}
spec:
  group: {g}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer, minimum: 1}}
"#,
        g = c.group
    );
    let widget = format!(
        "apiVersion: {}/v1\nkind: Widget\nmetadata:\n  name: big\nspec:\n  size: 3\n",
        c.group
    );
    let repo = repo_with(
        &c,
        &[
            ("crd.yaml", crd),
            ("widget.yaml", widget),
            ("cm.yaml", configmap("settings", "1")),
        ],
    );
    let site = c.site(&repo, "");
    site.sync_ok();
    let w = c
        .get(&format!(
            "/apis/{}/v1/namespaces/{}/widgets/big",
            c.group, c.ns
        ))
        .expect("the Widget was applied after its CRD was established");
    assert_eq!(w["spec"]["size"], 3);
    assert_eq!(c.cm_value("settings").as_deref(), Some("1"));
    let status = site.source_status("apps");
    assert_eq!(status["state"], "Ready", "{status}");
    assert_eq!(status["object_count"], 4);
}

#[test]
fn drift_is_corrected_on_the_next_interval_and_the_other_manager_is_named() {
    let c = Cluster::start("drift");
    let repo = repo_with(
        &c,
        &[
            ("a.yaml", configmap("a", "1")),
            ("b.yaml", configmap("b", "1")),
        ],
    );
    let site = c.site(&repo, "");
    let daemon = site.spawn_daemon();
    wait_until(
        Duration::from_secs(30),
        "the first apply has finished",
        || {
            site.try_source_status("apps")
                .is_some_and(|s| s["state"] == "Ready")
        },
    );
    assert_eq!(c.cm_value("a").as_deref(), Some("1"));
    if let Some(d) = c.double() {
        // Let a few unchanged cycles pass: none of them may re-apply anything.
        d.reset_requests();
        std::thread::sleep(Duration::from_millis(2500));
        let patches: Vec<_> = d
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect();
        assert!(
            patches.is_empty(),
            "unchanged cycles re-applied: {patches:?}"
        );
        d.reset_requests();
    }
    c.edit(
        "/api/v1",
        "configmaps",
        "a",
        json!({"data": {"version": "hand-edited"}}),
        "kubectl-edit",
    );
    wait_until(Duration::from_secs(30), "drift corrected", || {
        c.cm_value("a").as_deref() == Some("1")
    });
    if let Some(d) = c.double() {
        let patched: Vec<String> = d
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path.contains("fieldManager=outpost"))
            .map(|r| r.path)
            .collect();
        assert!(
            !patched.is_empty() && patched.iter().all(|p| p.contains("/configmaps/a?")),
            "only the drifted object is re-applied: {patched:?}"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "status shows the correction",
        || {
            let Some(s) = site.try_source_status("apps") else {
                return false;
            };
            s["drift_corrected"].as_u64().unwrap_or(0) >= 1
                && s["notes"].to_string().contains("kubectl-edit")
        },
    );
    let status = site.source_status("apps");
    assert!(
        status["notes"].to_string().contains(".data.version"),
        "the note names the field: {status}"
    );
    assert!(daemon.terminate());
}

#[test]
fn immutable_field_fails_clearly_unless_force_recreates() {
    let c = Cluster::start("immutable");
    let repo = repo_with(&c, &[("web.yaml", deployment("web", "web", "nginx:1.27"))]);
    let mut site = c.site(&repo, "wait = false");
    site.sync_ok();
    let path = format!("/apis/apps/v1/namespaces/{}/deployments/web", c.ns);
    let uid = c.get(&path).unwrap()["metadata"]["uid"].clone();

    repo.write(
        "web.yaml",
        deployment("web", "web-v2", "nginx:1.27").as_bytes(),
    );
    let v2 = repo.commit("new selector");
    let out = site.sync_fails();
    assert!(out.contains(&format!("Deployment/{}/web", c.ns)), "{out}");
    assert!(
        out.contains("spec.selector") && out.contains("immutable"),
        "{out}"
    );
    assert!(out.contains("force = true"), "the fix is named: {out}");
    let live = c.get(&path).unwrap();
    assert_eq!(
        live["spec"]["selector"]["matchLabels"]["app"], "web",
        "last good kept"
    );

    c.set_source(&mut site, &repo, "wait = false\nforce = true");
    site.sync_ok();
    let live = c.get(&path).unwrap();
    assert_eq!(live["spec"]["selector"]["matchLabels"]["app"], "web-v2");
    assert_ne!(live["metadata"]["uid"], uid, "recreated");
    let status = site.source_status("apps");
    assert_eq!(status["last_good"], v2.as_str());
    assert!(
        status["notes"].to_string().contains("recreated"),
        "{status}"
    );
}

#[test]
fn if_not_present_and_ignore_annotations() {
    let c = Cluster::start("policies");
    let annotated = |name: &str, version: &str, policy: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    outpost.dev/apply: {policy}\ndata:\n  version: \"{version}\"\n"
        )
    };
    let repo = repo_with(
        &c,
        &[
            ("keep.yaml", annotated("keep", "1", "if-not-present")),
            ("hands-off.yaml", annotated("hands-off", "1", "ignore")),
        ],
    );
    let site = c.site(&repo, "");
    site.sync_ok();
    assert_eq!(
        c.cm_value("keep").as_deref(),
        Some("1"),
        "if-not-present creates"
    );
    assert!(c.cm("hands-off").is_none(), "ignore never creates");

    c.edit(
        "/api/v1",
        "configmaps",
        "keep",
        json!({"data": {"version": "site"}}),
        "operator",
    );
    repo.write(
        "keep.yaml",
        annotated("keep", "2", "if-not-present").as_bytes(),
    );
    repo.commit("keep v2");
    site.sync_ok();
    site.sync_ok();
    assert_eq!(
        c.cm_value("keep").as_deref(),
        Some("site"),
        "if-not-present never updates"
    );
    assert!(c.cm("hands-off").is_none());
}

#[test]
fn an_invalid_object_fails_the_revision_and_the_last_good_stays() {
    let c = Cluster::start("invalid");
    let repo = repo_with(&c, &[("a.yaml", configmap("a", "1"))]);
    let site = c.site(&repo, "");
    site.sync_ok();
    let good = repo.head();

    // A number where the schema wants a string: server-side apply answers 500 "failed to create typed patch".
    repo.write("a.yaml", configmap("a", "2").as_bytes());
    repo.write(
        "bad.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  count: 1\n",
    );
    repo.commit("typo");
    let out = site.sync_fails();
    assert!(
        out.contains(&format!("ConfigMap/{}/bad", c.ns)),
        "names the object: {out}"
    );
    assert!(out.contains("wrong type"), "{out}");
    assert!(out.contains("rolled back from"), "{out}");
    assert_eq!(
        c.cm_value("a").as_deref(),
        Some("1"),
        "the last good is back in the cluster"
    );
    let status = site.source_status("apps");
    assert_eq!(status["last_good"], good.as_str());
    assert_eq!(status["state"], "Failed");

    // A kind the cluster does not serve is refused before anything is written.
    repo.remove("bad.yaml");
    repo.write(
        "gadget.yaml",
        b"apiVersion: nowhere.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n",
    );
    repo.commit("unknown kind");
    let out = site.sync_fails();
    assert!(out.contains("does not serve kind Gadget"), "{out}");
    assert_eq!(c.cm_value("a").as_deref(), Some("1"));
}

#[test]
fn a_revision_that_never_becomes_healthy_is_rolled_back() {
    let c = Cluster::start("rollback");
    let repo = repo_with(&c, &[("a.yaml", configmap("a", "1"))]);
    // prune stays off: what the failed revision created is still removed by the rollback.
    let site = c.site(&repo, "timeout = \"3s\"");
    site.sync_ok();
    let good = repo.head();
    if let Some(d) = c.double() {
        d.set_workloads_ready(false);
    }
    repo.write("b.yaml", configmap("b", "1").as_bytes());
    repo.write(
        "web.yaml",
        deployment("web", "web", "registry.invalid/outpost/never:1").as_bytes(),
    );
    let bad = repo.commit("a deployment that never becomes available");
    let out = site.sync_fails();
    assert!(
        out.contains(&format!(
            "rolled back from {} to {}",
            &bad[..12],
            &good[..12]
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("Deployment/{}/web", c.ns)) && out.contains("not healthy"),
        "{out}"
    );
    assert!(
        c.cm("b").is_none(),
        "b, created by the failed revision, was removed"
    );
    assert!(c
        .get(&format!(
            "/apis/apps/v1/namespaces/{}/deployments/web",
            c.ns
        ))
        .is_none());
    assert_eq!(c.cm_value("a").as_deref(), Some("1"));
    let status = site.source_status("apps");
    assert_eq!(status["applied"], good.as_str());
    assert!(status["last_error"]
        .as_str()
        .unwrap()
        .starts_with("rolled back from"));
}

#[test]
fn two_replicas_share_one_lease_and_only_the_holder_applies() {
    let c = Cluster::start("lease");
    let repo = repo_with(&c, &[("a.yaml", configmap("a", "1"))]);
    // Two replicas of one agent: the same id (so the same owner), each with its own state directory.
    let one = c.site(&repo, "");
    let two = c.site(&repo, "");
    let d1 = one.spawn_daemon();
    let d2 = two.spawn_daemon();
    wait_until(Duration::from_secs(30), "one replica applies", || {
        c.cm_value("a").as_deref() == Some("1")
    });
    let lease_path = format!(
        "/apis/coordination.k8s.io/v1/namespaces/default/leases/{}",
        c.ns
    );
    let holder = || {
        c.get(&lease_path)
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let suspended = |site: &common::Site| {
        site.try_source_status("apps")
            .is_some_and(|s| s["state"] == "Suspended")
    };
    wait_until(
        Duration::from_secs(10),
        "one replica reports standby",
        || suspended(&one) || suspended(&two),
    );
    let first_holder = holder();
    let (leader, follower, leader_daemon, follower_daemon) = if suspended(&two) {
        (&one, &two, d1, d2)
    } else {
        (&two, &one, d2, d1)
    };
    assert!(
        follower.source_status("apps")["applied"].is_null(),
        "the follower never applied"
    );
    assert_eq!(leader.source_status("apps")["state"], "Ready");

    // The leader goes away; the follower already has the new revision cached and applies it at once.
    repo.write("a.yaml", configmap("a", "2").as_bytes());
    repo.commit("v2");
    assert!(leader_daemon.terminate());
    wait_until(Duration::from_secs(30), "the follower takes over", || {
        c.cm_value("a").as_deref() == Some("2")
    });
    let new_holder = holder();
    assert!(
        new_holder.starts_with(&format!("{}-", c.ns)) && new_holder != first_holder,
        "{first_holder} -> {new_holder}"
    );
    wait_until(Duration::from_secs(10), "the new leader is Ready", || {
        follower
            .try_source_status("apps")
            .is_some_and(|s| s["state"] == "Ready")
    });
    assert!(follower_daemon.terminate());
}

#[test]
fn a_restart_while_the_api_server_is_down_converges_once_it_is_up() {
    let mut c = Cluster::start("outage");
    if c.double.is_none() {
        eprintln!("skipped on a real cluster: it needs to switch the API server off");
        return;
    }
    let repo = repo_with(&c, &[("a.yaml", configmap("a", "1"))]);
    let site = c.site(&repo, "");
    site.sync_ok();
    repo.write("a.yaml", configmap("a", "2").as_bytes());
    repo.commit("v2 while the API server is down");
    c.double.as_mut().unwrap().stop();
    let daemon = site.spawn_daemon();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let unreachable = || {
        site.try_source_status("apps").is_some_and(|s| {
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot reach the Kubernetes API"))
        })
    };
    while !unreachable() {
        assert!(
            std::time::Instant::now() < deadline,
            "status never said the API is unreachable: {:?}\n{}",
            site.try_source_status("apps"),
            daemon.log().lines().take(30).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = site.try_source_status("apps");
    assert!(
        status.as_ref().is_some_and(|s| s["state"] == "Stale"),
        "{status:?}\n{}",
        daemon.log()
    );
    c.double.as_mut().unwrap().start_again();
    wait_until(
        Duration::from_secs(60),
        "converged after the API server is back",
        || c.cm_value("a").as_deref() == Some("2"),
    );
    assert!(daemon.terminate());
}

#[test]
fn forbidden_objects_name_the_object_and_the_fix() {
    let c = Cluster::start("forbidden");
    let Some(d) = c.double() else {
        eprintln!("skipped on a real cluster: it needs an account without rights");
        return;
    };
    let repo = repo_with(&c, &[("a.yaml", configmap("a", "1"))]);
    let site = c.site(&repo, "");
    site.sync_ok();
    d.forbid("secrets");
    repo.write(
        "secret.yaml",
        b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  token: x\n",
    );
    repo.commit("a secret we may not write");
    let out = site.sync_fails();
    assert!(out.contains(&format!("Secret/{}/creds", c.ns)), "{out}");
    assert!(out.contains("403") && out.contains("RBAC"), "{out}");
    assert_eq!(c.cm_value("a").as_deref(), Some("1"));
}

#[test]
fn prune_spares_protected_objects_and_a_lost_state_directory_orphans_nothing() {
    let c = Cluster::start("prune");
    let protected = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep-me\n  annotations:\n    outpost.dev/prune: disabled\ndata:\n  version: \"1\"\n";
    let repo = repo_with(
        &c,
        &[
            ("a.yaml", configmap("a", "1")),
            ("b.yaml", configmap("b", "1")),
            ("keep.yaml", protected.to_string()),
        ],
    );
    let site = c.site(&repo, "prune = true");
    site.sync_ok();
    repo.remove("keep.yaml");
    repo.commit("stop managing keep-me");
    site.sync_ok();
    assert!(
        c.cm("keep-me").is_some(),
        "outpost.dev/prune: disabled is never deleted"
    );

    // The state directory is lost (a disk swap); b leaves Git meanwhile. The inventory is rebuilt from the
    // cluster by our source label, so b is still pruned.
    std::fs::remove_dir_all(site.state_dir()).unwrap();
    repo.remove("b.yaml");
    repo.commit("remove b");
    site.sync_ok();
    assert!(c.cm("b").is_none(), "b was found by label and pruned");
    assert_eq!(c.cm_value("a").as_deref(), Some("1"));
}

#[test]
fn a_namespace_on_a_cluster_scoped_object_is_refused_before_any_write() {
    let c = Cluster::start("scope");
    let repo = repo_with(
        &c,
        &[
            ("a.yaml", configmap("a", "1")),
            (
                "role.yaml",
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: e2e-reader\n  namespace: somewhere\nrules: []\n".to_string(),
            ),
        ],
    );
    let site = c.site(&repo, "");
    let out = site.sync_fails();
    assert!(out.contains("ClusterRole/somewhere/e2e-reader"), "{out}");
    assert!(
        out.contains("cluster-scoped") && out.contains("remove metadata.namespace"),
        "{out}"
    );
    assert!(c.cm("a").is_none(), "nothing was written");
}
