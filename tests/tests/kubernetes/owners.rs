//! Several agents on one cluster. Source names repeat across sites and tenants, so ownership is per agent and
//! source: an agent never deletes, overwrites or blocks what another agent applied, also after it lost its state
//! directory, and objects labelled before owners existed are adopted only by the agent whose inventory lists them.

use std::time::Duration;

use outpost_agent::deploy::kube::owner::Owner;
use outpost_tests::GitRepo;
use serde_json::{json, Value};

use super::cluster::{namespace_yaml, rand_u32, repo_with, Cluster};
use super::common::{configmap, wait_until};

/// `configmap` in namespace `ns`.
fn configmap_in(ns: &str, name: &str, version: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\ndata:\n  version: \"{version}\"\n"
    )
}

/// What must not change about another agent's object: it exists, is not being deleted, keeps its owner and
/// its resourceVersion.
fn fingerprint(object: Option<Value>) -> Option<(Value, Value)> {
    let o = object?;
    assert!(
        o["metadata"]["deletionTimestamp"].is_null(),
        "being deleted: {o}"
    );
    Some((
        o["metadata"]["resourceVersion"].clone(),
        o["metadata"]["labels"]["outpost.dev/owner"].clone(),
    ))
}

#[test]
fn a_lost_state_directory_never_takes_another_agents_objects() {
    let c = Cluster::start("lostowner");
    let (a_id, b_id) = (format!("{}-a", c.ns), format!("{}-b", c.ns));
    let a_repo = repo_with(&c, &[("a.yaml", configmap("a", "1"))]);
    let a = c.agent_site(&a_id, &a_repo, &c.ns, "prune = true");
    let b_ns = c.other_namespace("b");
    let b_repo = GitRepo::new();
    b_repo.write("namespace.yaml", namespace_yaml(&b_ns).as_bytes());
    b_repo.write("b.yaml", configmap("b", "1").as_bytes());
    b_repo.write("c.yaml", configmap("c", "1").as_bytes());
    b_repo.commit("initial");
    let b = c.agent_site(&b_id, &b_repo, &b_ns, "prune = true");
    a.sync_ok();
    b.sync_ok();
    let a_ns = fingerprint(c.namespace(&c.ns)).expect("A's namespace");
    let a_cm = fingerprint(c.cm("a")).expect("A's ConfigMap");
    assert_eq!(a_ns.1, Owner::new(&a_id, "apps").id.as_str());

    // B loses its state directory (a disk swap, a new PVC) and its bundle drops c meanwhile: B rebuilds its
    // inventory by its own owner label, prunes its own c, and leaves A's Namespace (same source name) alone.
    std::fs::remove_dir_all(b.state_dir()).unwrap();
    b_repo.remove("c.yaml");
    b_repo.commit("remove c");
    b.sync_ok();
    assert!(c.cm_in(&b_ns, "c").is_none(), "B's own c was pruned");
    assert!(c.cm_in(&b_ns, "b").is_some());
    assert_eq!(fingerprint(c.namespace(&c.ns)), Some(a_ns.clone()));
    assert_eq!(fingerprint(c.cm("a")), Some(a_cm.clone()));

    // And the other way round.
    std::fs::remove_dir_all(a.state_dir()).unwrap();
    a.sync_ok();
    assert!(fingerprint(c.namespace(&b_ns)).is_some());
    assert!(c.cm_in(&b_ns, "b").is_some());
    assert_eq!(fingerprint(c.namespace(&c.ns)), Some(a_ns));
}

#[test]
fn the_same_object_in_two_agents_bundles_is_refused_naming_both_owners() {
    let c = Cluster::start("conflict");
    let (a_id, b_id) = (format!("{}-a", c.ns), format!("{}-b", c.ns));
    let a_repo = repo_with(&c, &[("shared.yaml", configmap("shared", "1"))]);
    let a = c.agent_site(&a_id, &a_repo, &c.ns, "prune = true");
    a.sync_ok();
    let before = fingerprint(c.cm("shared")).unwrap();

    let b_repo = GitRepo::new();
    b_repo.write("shared.yaml", configmap_in(&c.ns, "shared", "2").as_bytes());
    b_repo.write("mine.yaml", configmap_in(&c.ns, "mine", "2").as_bytes());
    b_repo.commit("initial");
    let b = c.agent_site(&b_id, &b_repo, &c.ns, "prune = true");
    let out = b.sync_fails();
    assert!(out.contains(&format!("ConfigMap/{}/shared", c.ns)), "{out}");
    assert!(
        out.contains(&format!("agent {a_id:?}, source \"apps\"")),
        "names the owner: {out}"
    );
    assert!(
        out.contains(&format!("this is agent {b_id:?}, source \"apps\"")),
        "names this agent: {out}"
    );
    assert!(out.contains("outpost.dev/adopt"), "names the fix: {out}");
    assert!(c.cm("mine").is_none(), "refused before any write");
    assert_eq!(fingerprint(c.cm("shared")), Some(before.clone()));
    assert_eq!(c.cm_value("shared").as_deref(), Some("1"));

    // A keeps converging: its object was not touched, so nothing drifted.
    a.sync_ok();
    assert_eq!(fingerprint(c.cm("shared")), Some(before));

    // An explicit adoption in B's Git takes the object over, and A then refuses rather than fights back.
    b_repo.write(
        "shared.yaml",
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  namespace: {}\n  annotations:\n    outpost.dev/adopt: \"true\"\ndata:\n  version: \"2\"\n",
            c.ns
        )
        .as_bytes(),
    );
    b_repo.commit("adopt shared");
    b.sync_ok();
    let status = b.source_status("apps");
    assert!(
        status["notes"].to_string().contains(&format!(
            "ConfigMap/{}/shared: adopted from agent {a_id}",
            c.ns
        )),
        "the status says whose object was taken: {status}"
    );
    let adopted = c.cm("shared").unwrap();
    assert_eq!(
        adopted["metadata"]["labels"]["outpost.dev/owner"],
        Owner::new(&b_id, "apps").id.as_str()
    );
    assert_eq!(adopted["data"]["version"], "2");
    let taken = fingerprint(Some(adopted)).unwrap();
    let out = a.sync_fails();
    assert!(out.contains(&format!("agent {b_id:?}")), "{out}");
    assert_eq!(fingerprint(c.cm("shared")), Some(taken));
}

#[test]
fn two_agents_with_default_leader_election_both_apply() {
    let c = Cluster::start("twoleases");
    let b_ns = c.other_namespace("b");
    let (a_id, b_id) = (format!("{}-a", c.ns), format!("{}-b", c.ns));
    let a_repo = repo_with(&c, &[("a.yaml", configmap("a", "1"))]);
    let b_repo = GitRepo::new();
    b_repo.write("namespace.yaml", namespace_yaml(&b_ns).as_bytes());
    b_repo.write("b.yaml", configmap("b", "1").as_bytes());
    b_repo.commit("initial");
    let mut a = c.agent_site(&a_id, &a_repo, &c.ns, "");
    a.tables = c.table_with_default_lease(&a_id);
    let mut b = c.agent_site(&b_id, &b_repo, &b_ns, "");
    b.tables = c.table_with_default_lease(&b_id);
    let da = a.spawn_daemon();
    let db = b.spawn_daemon();
    wait_until(Duration::from_secs(30), "both agents apply", || {
        c.cm_value("a").as_deref() == Some("1") && c.cm_in(&b_ns, "b").is_some()
    });
    for (site, id) in [(&a, &a_id), (&b, &b_id)] {
        wait_until(Duration::from_secs(10), "Ready, not Suspended", || {
            site.try_source_status("apps")
                .is_some_and(|s| s["state"] == "Ready")
        });
        let lease = c
            .get(&format!(
                "/apis/coordination.k8s.io/v1/namespaces/default/leases/outpost-leader-{id}"
            ))
            .expect("each agent holds a lease of its own");
        assert!(
            lease["spec"]["holderIdentity"]
                .as_str()
                .is_some_and(|h| h.starts_with(&format!("{id}-"))),
            "{lease}"
        );
    }
    assert!(da.terminate());
    assert!(db.terminate());
}

#[test]
fn objects_labelled_before_owners_are_adopted_only_by_the_agent_that_lists_them() {
    let c = Cluster::start("legacy");
    let (a_id, b_id) = (format!("{}-a", c.ns), format!("{}-b", c.ns));
    let a_repo = repo_with(&c, &[("old.yaml", configmap("old", "1"))]);
    let a = c.agent_site(&a_id, &a_repo, &c.ns, "prune = true");
    a.sync_ok();
    // What an earlier Outpost left: the source label without an owner.
    c.edit(
        "/api/v1",
        "configmaps",
        "old",
        json!({"metadata": {"labels": {"outpost.dev/owner": null},
                            "annotations": {"outpost.dev/agent": null}}}),
        "upgrade",
    );
    let legacy = c.cm("old").unwrap();
    assert!(legacy["metadata"]["labels"]["outpost.dev/owner"].is_null());
    assert_eq!(legacy["metadata"]["labels"]["outpost.dev/source"], "apps");
    let rv = legacy["metadata"]["resourceVersion"].clone();

    // Another agent with a source of the same name and no state: it neither prunes nor takes the object.
    let b_repo = GitRepo::new();
    b_repo.write("other.yaml", configmap_in(&c.ns, "other", "1").as_bytes());
    b_repo.commit("initial");
    let b = c.agent_site(&b_id, &b_repo, &c.ns, "prune = true");
    b.sync_ok();
    b_repo.write("old.yaml", configmap_in(&c.ns, "old", "2").as_bytes());
    b_repo.commit("claims old");
    let out = b.sync_fails();
    assert!(
        out.contains(&format!("ConfigMap/{}/old", c.ns))
            && out.contains("inventory does not list it"),
        "{out}"
    );
    let still = c.cm("old").expect("not pruned");
    assert_eq!(still["metadata"]["resourceVersion"], rv, "not modified");

    // The agent whose stored inventory lists it adopts it on its next sync (the drift check finds it unowned).
    a.sync_ok();
    let adopted = c.cm("old").unwrap();
    assert_eq!(
        adopted["metadata"]["labels"]["outpost.dev/owner"],
        Owner::new(&a_id, "apps").id.as_str()
    );
    assert_eq!(adopted["data"]["version"], "1");
}

#[test]
fn state_directories_lost_at_random_between_syncs_never_touch_the_other_agent() {
    let c = Cluster::start("chaos");
    let seed = rand_u32();
    eprintln!("seed {seed}");
    let mut rng = seed;
    let mut next = move || {
        // xorshift32: repeatable from the printed seed.
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        rng
    };
    let (a_id, b_id) = (format!("{}-a", c.ns), format!("{}-b", c.ns));
    let a_repo = repo_with(
        &c,
        &[
            ("a1.yaml", configmap("a1", "1")),
            ("a2.yaml", configmap("a2", "1")),
        ],
    );
    let a = c.agent_site(&a_id, &a_repo, &c.ns, "prune = true");
    let b_ns = c.other_namespace("b");
    let b_repo = GitRepo::new();
    b_repo.write("namespace.yaml", namespace_yaml(&b_ns).as_bytes());
    // A rebuilt inventory only covers the kinds of the current bundle, so B always keeps one ConfigMap.
    b_repo.write("anchor.yaml", configmap("anchor", "1").as_bytes());
    b_repo.commit("initial");
    let b = c.agent_site(&b_id, &b_repo, &b_ns, "prune = true");
    a.sync_ok();
    b.sync_ok();
    let a_objects = || {
        [
            fingerprint(c.namespace(&c.ns)),
            fingerprint(c.cm("a1")),
            fingerprint(c.cm("a2")),
        ]
    };
    let a_before = a_objects();
    assert!(a_before.iter().all(Option::is_some));
    let mut b_cms: Vec<String> = Vec::new();
    for round in 0..30 {
        // B's bundle changes (so it prunes), and either agent may lose its state before the next syncs.
        let name = format!("b{}", next() % 6);
        if let Some(i) = b_cms.iter().position(|n| *n == name) {
            b_cms.remove(i);
            b_repo.remove(&format!("{name}.yaml"));
        } else {
            b_repo.write(&format!("{name}.yaml"), configmap(&name, "1").as_bytes());
            b_cms.push(name);
        }
        b_repo.commit(&format!("round {round}"));
        match next() % 4 {
            0 => std::fs::remove_dir_all(a.state_dir()).unwrap(),
            1 | 2 => std::fs::remove_dir_all(b.state_dir()).unwrap(),
            _ => {}
        }
        if next() % 2 == 0 {
            b.sync_ok();
            a.sync_ok();
        } else {
            a.sync_ok();
            b.sync_ok();
        }
        assert_eq!(a_objects(), a_before, "round {round} (seed {seed})");
        for i in 0..6 {
            let name = format!("b{i}");
            assert_eq!(
                c.cm_in(&b_ns, &name).is_some(),
                b_cms.contains(&name),
                "round {round}: B's {name} (seed {seed})"
            );
        }
        assert!(fingerprint(c.namespace(&b_ns)).is_some(), "round {round}");
    }
}
