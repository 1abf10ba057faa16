//! Fleet rollouts end to end (issue 19): a real `outpost-hub` process and ten real `outpost run` agents with
//! directory targets, pulling from a Git repository the test controls; every step through the command line
//! an operator uses (`outpost-hub release set`, `rollout start|status`).
//!
//! One fleet, four scenarios in order (starting ten agents is the slow part): a three-wave rollout succeeds;
//! a bad commit fails the canary and is rolled back while the other waves never see it; an offline site is
//! deferred and catches up when it returns; a hub restart mid-rollout resumes where it was. Also: per-site values
//! from labels, and a site outside its maintenance window deferred (not failed) until the window opens.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::hub::keygen;
use common::{wait_until, Daemon, Site};
use outpost_tests::GitRepo;
use serde_json::Value;

const SITES: usize = 10;
const WAIT: Duration = Duration::from_secs(90);

struct Hub {
    dir: PathBuf,
    child: Option<Child>,
    addr: String,
}

impl Hub {
    fn toml(&self) -> PathBuf {
        self.dir.join("hub.toml")
    }

    fn start(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost-hub-e2e"))
            .args(["serve", "--config"])
            .arg(self.toml())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.dir.join("hub.log")).unwrap())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("the hub printed its address").unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                self.addr = addr.to_owned();
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        // The command-line tools find the hub through `listen`: pin the port it got.
        let text = std::fs::read_to_string(self.toml()).unwrap();
        let text = text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{}\"", self.addr),
        );
        std::fs::write(self.toml(), text).unwrap();
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Runs an `outpost-hub` admin command; panics unless it succeeds.
    fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_outpost-hub-e2e"))
            .args(args)
            .arg("--config")
            .arg(self.toml())
            .arg("--token-file")
            .arg(self.dir.join("admin.token"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "outpost-hub {args:?}: {text}");
        text
    }

    /// A page the hub serves without credentials (`public_read = true`), as text.
    fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    fn rollout(&self, id: &str) -> Value {
        serde_json::from_str(&self.admin(&["rollout", "status", "--id", id, "--json"])).unwrap()
    }

    fn agents(&self) -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_outpost-hub-e2e"))
            .args(["status", "--json", "--config"])
            .arg(self.toml())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn commit_manifest(repo: &GitRepo, version: &str) -> String {
    // `${RING}` and `${SITE}` are the release's per-site values (from the site's label and its id).
    let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shop\ndata:\n  version: \"{version}\"\n  ring: \"${{RING}}\"\n  site: \"${{SITE}}\"\n");
    repo.write("deploy/shop.yaml", text.as_bytes());
    repo.commit(&format!("shop {version}"))
}

/// `outpost run` for `site` with the maintenance windows' clock at `now` (`OUTPOST_TEST_NOW`).
fn spawn_at(site: &Site, now: &str) -> Daemon {
    site.write_config();
    let log = site.dir.path().join(format!("daemon-at-{now}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = site
        .command(&["run"])
        .env("OUTPOST_TEST_NOW", now)
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("spawn outpost run");
    Daemon { child, log }
}

fn applied_version(root: &Path, id: &str) -> Option<String> {
    let text = std::fs::read_to_string(root.join(id).join("shop.yaml")).ok()?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("version:"))?;
    Some(line.split(':').nth(1)?.trim().trim_matches('"').to_owned())
}

fn phase(hub: &Hub, id: &str) -> String {
    hub.rollout(id)["phase"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn site_state(record: &Value, id: &str) -> String {
    record["sites"][id]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn rollouts_move_waves_roll_back_defer_offline_sites_and_survive_a_hub_restart() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("targets");
    let repo = GitRepo::new();
    let v1 = commit_manifest(&repo, "v1");

    let mut sites: Vec<Site> = Vec::new();
    let mut agent_tables = String::new();
    for i in 0..SITES {
        let mut site = Site::new();
        site.agent_id = format!("shop-{i:02}");
        let key = keygen(&site);
        agent_tables.push_str(&format!(
            "[[agent]]\nid = \"{}\"\npublic_key = \"{key}\"\n",
            site.agent_id
        ));
        sites.push(site);
    }
    let credential = Command::new(env!("CARGO_BIN_EXE_outpost-hub-e2e"))
        .args([
            "credential",
            "create",
            "--role",
            "admin",
            "--name",
            "test",
            "--token-file",
        ])
        .arg(work.path().join("admin.token"))
        .output()
        .unwrap();
    assert!(credential.status.success());
    std::fs::write(
        work.path().join("hub.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\npublic_read = true\nheartbeat_interval = \"1s\"\nrollout_interval = \"200ms\"\n{agent_tables}{}",
            work.path().join("hub-state").display(),
            String::from_utf8_lossy(&credential.stdout)
        ),
    )
    .unwrap();
    let mut hub = Hub {
        dir: work.path().to_owned(),
        child: None,
        addr: String::new(),
    };
    hub.start();
    let hub_public_key = hub_public_key_of(&hub);

    // Every site: labels by the operator, ring=canary on the first, and an agent with only an [upstream].
    let mut daemons: Vec<Option<Daemon>> = Vec::new();
    for (i, site) in sites.iter_mut().enumerate() {
        let labels = if i == 0 {
            "app=shop,ring=canary"
        } else {
            "app=shop,ring=main"
        };
        hub.admin(&[
            "agents",
            "label",
            "--agent",
            &site.agent_id,
            "--labels",
            labels,
        ]);
        site.tables = format!(
            "[upstream]\nurl = \"http://{}\"\nhub_key = \"{}\"\nheartbeat_interval = \"1s\"\n",
            hub.addr, hub_public_key
        );
        daemons.push(Some(site.spawn_daemon()));
    }

    // The release: every app=shop site runs v1, each in its own folder.
    let source = work.path().join("release.toml");
    std::fs::write(
        &source,
        format!(
            "[[source]]\nname = \"shop\"\nurl = \"{}\"\nbranch = \"main\"\npath = \"deploy\"\ninterval = \"1s\"\ntarget = \"directory:{}/${{agent_id}}\"\n[source.vars]\nRING = \"${{label:ring}}\"\nSITE = \"${{agent_id}}\"\n",
            repo.file_url(),
            root.display()
        ),
    )
    .unwrap();
    let out = hub.admin(&[
        "release",
        "set",
        "--name",
        "shop",
        "--selector",
        "app=shop",
        "--commit",
        &v1,
        "--source",
        source.to_str().unwrap(),
    ]);
    assert!(out.contains("on 10 sites"), "{out}");
    wait_until(WAIT, "every site applies v1", || {
        sites
            .iter()
            .all(|s| applied_version(&root, &s.agent_id).as_deref() == Some("v1"))
    });
    // Per-site values: each site's ring label and its id reached its manifests.
    for (i, site) in sites.iter().enumerate() {
        let applied = std::fs::read_to_string(root.join(&site.agent_id).join("shop.yaml")).unwrap();
        let ring = if i == 0 { "canary" } else { "main" };
        assert!(
            applied.contains(&format!("ring: {ring}"))
                && applied.contains(&format!("site: {}", site.agent_id)),
            "{applied}"
        );
    }

    // One site is outside its maintenance window (its own `[agent] windows`, on a Friday by the test's clock):
    // it will hold the new commit, Deferred rather than failed or waited for.
    const WINDOWED: usize = 9;
    if let Some(d) = daemons[WINDOWED].take() {
        assert!(d.terminate());
    }
    sites[WINDOWED].agent_extra = "windows = [\"Sat,Sun 00:00-24:00\"]\ntimezone = \"UTC\"".into();
    daemons[WINDOWED] = Some(spawn_at(&sites[WINDOWED], "2026-12-11T12:00:00Z"));

    // 1. Three waves: the canary, half the fleet, the rest.
    let v2 = commit_manifest(&repo, "v2");
    start_rollout(&hub, &v2, "to-v2", &[]);
    wait_until(WAIT, "rollout to-v2 succeeds", || {
        phase(&hub, "to-v2") == "Succeeded"
    });
    for (i, s) in sites.iter().enumerate() {
        let want = if i == WINDOWED { "v1" } else { "v2" };
        assert_eq!(
            applied_version(&root, &s.agent_id).as_deref(),
            Some(want),
            "{}",
            s.agent_id
        );
    }
    let windowed = hub.rollout("to-v2")["sites"][&sites[WINDOWED].agent_id].clone();
    assert_eq!(windowed["state"], "Deferred", "{windowed}");
    assert_eq!(windowed["deferred"], "Window", "{windowed}");
    // Its window opens (Saturday): it applies the commit it holds, and the rollout's record says Ready.
    if let Some(d) = daemons[WINDOWED].take() {
        assert!(d.terminate());
    }
    daemons[WINDOWED] = Some(spawn_at(&sites[WINDOWED], "2026-12-12T12:00:00Z"));
    wait_until(
        WAIT,
        "the windowed site applies v2 once its window opens",
        || {
            applied_version(&root, &sites[WINDOWED].agent_id).as_deref() == Some("v2")
                && hub.rollout("to-v2")["sites"][&sites[WINDOWED].agent_id]["state"] == "Ready"
        },
    );
    // Back to a site without windows for the scenarios below.
    if let Some(d) = daemons[WINDOWED].take() {
        assert!(d.terminate());
    }
    sites[WINDOWED].agent_extra.clear();
    daemons[WINDOWED] = Some(sites[WINDOWED].spawn_daemon());
    let record = hub.rollout("to-v2");
    let waves = record["waves"].as_array().unwrap().clone();
    assert_eq!(
        waves
            .iter()
            .map(|w| w["sites"].as_array().unwrap().len())
            .collect::<Vec<_>>(),
        vec![1, 4, 5]
    );
    assert_eq!(waves[0]["sites"][0], "shop-00");
    for pair in waves.windows(2) {
        assert!(
            pair[1]["started_ms"].as_u64() >= pair[0]["passed_ms"].as_u64(),
            "waves overlap: {pair:?}"
        );
    }
    for (id, site) in record["sites"].as_object().unwrap() {
        let wave = &waves[site["wave"].as_u64().unwrap() as usize];
        assert!(
            site["pinned_ms"].as_u64() >= wave["started_ms"].as_u64(),
            "{id} was pinned before its wave"
        );
        assert_eq!(site["state"], "Ready", "{id}");
    }

    // 2. A bad commit: the canary fails, the breach rolls it back, no other site is ever pinned to it.
    repo.write("deploy/shop.yaml", b"apiVersion: v1\nkind: [ConfigMap\n");
    let bad = repo.commit("broken manifest");
    start_rollout(&hub, &bad, "bad", &[]);
    wait_until(WAIT, "rollout bad rolls back", || {
        phase(&hub, "bad") == "RolledBack"
    });
    let record = hub.rollout("bad");
    let failure = record["failures"]["shop-00"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !failure.is_empty(),
        "the canary's own error is recorded: {record}"
    );
    assert_eq!(record["failures"].as_object().unwrap().len(), 1);
    for (id, site) in record["sites"].as_object().unwrap() {
        let expected = if id == "shop-00" {
            "RolledBack"
        } else {
            "Pending"
        };
        assert_eq!(site["state"], expected, "{id}");
    }
    let status = hub.admin(&["rollout", "status", "--id", "bad"]);
    assert!(status.contains("failed shop-00:"), "{status}");
    let page = hub.get("/");
    assert!(
        page.contains("<h2>Rollouts</h2>") && page.contains("<code>bad</code>"),
        "{page}"
    );
    assert!(
        page.contains("Failed sites:") && page.contains("<code>shop-00</code>"),
        "{page}"
    );
    let metrics = hub.get("/metrics");
    assert!(
        metrics.contains(
            "outpost_hub_rollout_phase{phase=\"RolledBack\",release=\"shop\",rollout=\"bad\"} 1"
        ),
        "{metrics}"
    );
    // The canary is back on v2 (re-pinned), and keeps it.
    wait_until(WAIT, "the canary runs v2 again", || {
        hub.agents().as_array().is_some_and(|a| {
            a.iter().any(|v| {
                v["agent_id"] == "shop-00"
                    && v["sources"][0]["state"] == "Ready"
                    && v["sources"][0]["applied_revision"] == v2.as_str()
            })
        })
    });
    assert!(sites
        .iter()
        .all(|s| applied_version(&root, &s.agent_id).as_deref() == Some("v2")));

    // 3. An offline site is deferred, not failed nor waited for, and catches up when it returns.
    let offline = "shop-05";
    drop(daemons[5].take());
    wait_until(WAIT, "the hub sees shop-05 offline", || {
        hub.agents().as_array().is_some_and(|a| {
            a.iter()
                .any(|v| v["agent_id"] == offline && v["status"] == "offline")
        })
    });
    let v3 = commit_manifest(&repo, "v3");
    start_rollout(&hub, &v3, "to-v3", &[]);
    wait_until(
        WAIT,
        "rollout to-v3 succeeds without the offline site",
        || phase(&hub, "to-v3") == "Succeeded",
    );
    let record = hub.rollout("to-v3");
    assert_eq!(site_state(&record, offline), "Deferred");
    assert_eq!(record["sites"][offline]["deferred"], "Offline");
    assert_eq!(applied_version(&root, offline).as_deref(), Some("v2"));
    daemons[5] = Some(sites[5].spawn_daemon());
    wait_until(WAIT, "the returning site catches up to v3", || {
        applied_version(&root, offline).as_deref() == Some("v3")
    });
    wait_until(WAIT, "the returning site is Ready in the rollout", || {
        site_state(&hub.rollout("to-v3"), offline) == "Ready"
    });

    // 4. A hub restart mid-rollout: wave 1 passes, the soak holds wave 2, the hub restarts, the rollout resumes.
    let v4 = commit_manifest(&repo, "v4");
    start_rollout(&hub, &v4, "to-v4", &["--soak", "4s"]);
    wait_until(WAIT, "the canary is Ready on v4", || {
        site_state(&hub.rollout("to-v4"), "shop-00") == "Ready"
    });
    let before = hub.rollout("to-v4");
    assert_eq!(before["current_wave"], 0, "the soak holds wave 2");
    hub.stop();
    hub.start();
    let after = hub.rollout("to-v4");
    assert_eq!(
        after["sites"]["shop-00"], before["sites"]["shop-00"],
        "the stored record survived the restart"
    );
    wait_until(WAIT, "rollout to-v4 succeeds after the restart", || {
        phase(&hub, "to-v4") == "Succeeded"
    });
    assert!(sites
        .iter()
        .all(|s| applied_version(&root, &s.agent_id).as_deref() == Some("v4")));
    let done = hub.rollout("to-v4");
    assert_eq!(
        done["sites"]["shop-00"]["pinned_ms"], before["sites"]["shop-00"]["pinned_ms"],
        "the canary was not started over"
    );
    hub.stop();
}

/// `outpost-hub rollout start` of release `shop` to `to` in three waves (the canary, half, the rest), with a
/// 60 s progress deadline and `extra` options.
fn start_rollout(hub: &Hub, to: &str, id: &str, extra: &[&str]) {
    let mut args = vec![
        "rollout",
        "start",
        "--release",
        "shop",
        "--to",
        to,
        "--id",
        id,
        "--progress-deadline",
        "60s",
        "--wave",
        "ring=canary",
        "--wave",
        "50%",
        "--wave",
        "100%",
    ];
    args.extend_from_slice(extra);
    hub.admin(&args);
}

/// The hub's public key, from the key file it created (what `serve` prints for operators).
fn hub_public_key_of(hub: &Hub) -> String {
    let key = outpost_proto::keys::SigningKey::load(&hub.dir.join("hub-state/hub.key")).unwrap();
    key.public_key().to_string()
}
