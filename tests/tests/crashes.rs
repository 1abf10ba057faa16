//! Power cuts, as `kill -9` at random moments of a running agent, 200 times over a history that has broken
//! commits in it. After every kill the store opens, the last good is a revision that built (never a broken one),
//! and the target file is whole; after the last one the site converges to the newest good commit.

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{configmap, Site};
use outpost_tests::GitRepo;

const CYCLES: u64 = 200;
const OBJECTS: usize = 60;

/// A small deterministic generator; the seed is printed so a failing run can be replayed with
/// `OUTPOST_CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn kill_9_at_random_moments_never_leaves_a_broken_last_good_or_a_torn_target() {
    let seed = std::env::var("OUTPOST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("OUTPOST_CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let repo = GitRepo::new();
    for i in 0..OBJECTS {
        repo.write(
            &format!("deploy/cm-{i:03}.yaml"),
            configmap(&format!("cm-{i:03}"), "0").as_bytes(),
        );
    }
    let mut good: HashSet<String> = HashSet::new();
    good.insert(repo.commit("v0"));
    let mut site = Site::new();
    site.source(
        "app",
        &repo.file_url(),
        "branch = \"main\"",
        "deploy",
        "interval = \"1s\"",
    );

    for cycle in 1..=CYCLES {
        // One commit in five is broken (it cannot be built); the next good one repairs it.
        if cycle % 5 == 0 {
            repo.write(
                "deploy/cm-000.yaml",
                b"kind: ConfigMap\nmetadata: [unclosed\n",
            );
            repo.commit(&format!("broken {cycle}"));
        } else {
            repo.write(
                "deploy/cm-000.yaml",
                configmap("cm-000", &cycle.to_string()).as_bytes(),
            );
            good.insert(repo.commit(&format!("v{cycle}")));
        }
        let agent = site.spawn_daemon();
        std::thread::sleep(Duration::from_millis(rng.next() % 250));
        agent.kill9();

        // The store opens (status reads it directly when no daemon runs) and says nothing broken is last good.
        let out = site.run(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): status after kill -9: {e}"));
        let app = status["sources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "app"))
            .cloned()
            .unwrap_or_default();
        if let Some(last_good) = app["last_good"].as_str() {
            assert!(
                good.contains(last_good),
                "cycle {cycle} (seed {seed}): last good {last_good} is not a revision that builds"
            );
        }
        // The target is a whole revision or absent: the header names a good commit and every object is there.
        let text = site.applied("app");
        if !text.is_empty() {
            let revision = site.applied_revision("app").unwrap_or_default();
            assert!(
                good.contains(&revision),
                "cycle {cycle} (seed {seed}): the target holds {revision}"
            );
            assert_eq!(
                text.matches("\nkind: ConfigMap").count(),
                OBJECTS,
                "cycle {cycle} (seed {seed}): a torn target file"
            );
        }
    }

    // After the last kill (the head is broken then, as every fifth commit is): a repairing commit, and the site
    // converges to it.
    repo.write(
        "deploy/cm-000.yaml",
        configmap("cm-000", "final").as_bytes(),
    );
    let last = repo.commit("repaired");
    site.sync_ok();
    assert_eq!(site.applied_revision("app").as_deref(), Some(last.as_str()));
    assert_eq!(site.source_status("app")["last_good"], last.as_str());
}
