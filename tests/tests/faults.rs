//! Network faults between a running agent and its Git host, its Kubernetes API server and its hub, injected by a
//! TCP proxy on loopback that refuses, hangs, delays and cuts connections on command. Each time the site keeps its
//! last good revision, says what is wrong, retries with backoff, and converges once the link is back: nothing is
//! lost, and no heartbeat arrives twice.

mod common;

use std::time::{Duration, Instant};

use common::hub::{keygen, Hub};
use common::{configmap, wait_until, Site};
use outpost_tests::{Fault, FaultProxy, GitHttpServer, GitRepo, KubeDouble};

const SECONDS: Duration = Duration::from_secs(1);

/// A running agent whose one source `app` (1 s interval, 2 s timeout) reaches git http-backend through a fault
/// proxy, with its first revision applied.
struct GitBehindProxy {
    repo: GitRepo,
    first: String,
    proxy: FaultProxy,
    site: Site,
    daemon: common::Daemon,
    _server: GitHttpServer,
}

impl GitBehindProxy {
    fn start() -> GitBehindProxy {
        let repo = GitRepo::new();
        repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
        let first = repo.commit("app 1");
        let server = GitHttpServer::start(repo.serve_dir());
        let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into());
        let url = server.url_for(repo.name()).replace(
            &format!(":{}/", server.port()),
            &format!(":{}/", proxy.port()),
        );
        let mut site = Site::new();
        site.source(
            "app",
            &url,
            "branch = \"main\"",
            "deploy",
            "interval = \"1s\"\ntimeout = \"2s\"",
        );
        let daemon = site.spawn_daemon();
        wait_until(30 * SECONDS, "the first revision applied", || {
            site.applied_revision("app").as_deref() == Some(first.as_str())
        });
        GitBehindProxy {
            repo,
            first,
            proxy,
            site,
            daemon,
            _server: server,
        }
    }
}

#[test]
fn every_git_link_fault_keeps_the_last_good_and_recovers() {
    let linked = GitBehindProxy::start();
    let (repo, proxy, site) = (&linked.repo, &linked.proxy, &linked.site);
    let mut last_good = linked.first.clone();

    let faults = [
        Fault::Drop,
        Fault::Blackhole,
        Fault::CutAfter(100),
        Fault::Delay(4 * SECONDS),
    ];
    for (n, fault) in faults.into_iter().enumerate() {
        let version = (n + 2).to_string();
        proxy.set(fault);
        repo.write("deploy/app.yaml", configmap("app", &version).as_bytes());
        let commit = repo.commit(&format!("app {version}"));

        // The fault shows: the source is Stale with the link's error, and the last good stays applied.
        wait_until(
            30 * SECONDS,
            &format!("{fault:?} reported as Stale"),
            || {
                site.try_source_status("app")
                    .is_some_and(|s| s["state"] == "Stale" && s["last_error"].is_string())
            },
        );
        let status = site.source_status("app");
        assert_eq!(
            status["last_good"],
            last_good.as_str(),
            "{fault:?}: {status}"
        );
        assert_eq!(
            site.applied_revision("app").as_deref(),
            Some(last_good.as_str()),
            "{fault:?}: the last good stays applied"
        );

        // Link back: the new commit arrives without a restart.
        proxy.set(Fault::None);
        wait_until(60 * SECONDS, &format!("recovery after {fault:?}"), || {
            site.applied_revision("app").as_deref() == Some(commit.as_str())
        });
        let status = site.source_status("app");
        assert_eq!(status["state"], "Ready", "{fault:?}: {status}");
        assert_eq!(status["last_good"], commit.as_str());
        last_good = commit;
    }
    assert!(linked.daemon.terminate(), "a clean stop after all faults");
}

#[test]
fn a_refusing_link_is_retried_with_backoff_not_every_interval() {
    let linked = GitBehindProxy::start();
    let (proxy, site, first) = (&linked.proxy, &linked.site, &linked.first);

    // One poll a second while the link works: the baseline the backoff must stay below.
    let window = 12 * SECONDS;
    proxy.set(Fault::Drop);
    let before = proxy.connections();
    let started = Instant::now();
    std::thread::sleep(window);
    let tries = proxy.connections() - before;
    let polls_without_backoff = window.as_secs() as usize;
    // 1 s, then doubling with ±50 % jitter: at most about five tries in 12 s, never one per second.
    assert!(
        (1..=polls_without_backoff / 2).contains(&tries),
        "{tries} connections in {:?} with the link refusing; one poll a second would be {polls_without_backoff}",
        started.elapsed()
    );
    assert_eq!(
        site.applied_revision("app").as_deref(),
        Some(first.as_str()),
        "the last good stays applied"
    );
}

#[test]
fn every_api_server_link_fault_keeps_the_last_good_and_recovers() {
    let double = KubeDouble::start();
    let proxy = FaultProxy::start(([127, 0, 0, 1], double.port()).into());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = double.write_kubeconfig(dir.path());
    let text = std::fs::read_to_string(&kubeconfig).unwrap().replace(
        &double.url(),
        &format!("https://127.0.0.1:{}", proxy.port()),
    );
    std::fs::write(&kubeconfig, text).unwrap();
    let cm = |name: &str| {
        double
            .get(&format!("/api/v1/namespaces/default/configmaps/{name}"))
            .and_then(|o| o["data"]["version"].as_str().map(String::from))
    };

    let repo = GitRepo::new();
    repo.write("a.yaml", configmap("a", "1").as_bytes());
    repo.commit("a 1");
    let mut site = Site::new();
    site.source_to(
        "apps",
        &repo.file_url(),
        "branch = \"main\"",
        ".",
        "kubernetes",
        "namespace = \"default\"\ninterval = \"1s\"\ntimeout = \"3s\"",
    );
    site.tables = format!(
        "[kubernetes]\nkubeconfig = \"{}\"\nleader_election = false\nrequest_timeout = \"2s\"\n",
        kubeconfig.display()
    );
    let daemon = site.spawn_daemon();
    wait_until(30 * SECONDS, "the first revision applied", || {
        cm("a").as_deref() == Some("1")
    });

    let faults = [Fault::Drop, Fault::Blackhole, Fault::CutAfter(300)];
    for (n, fault) in faults.into_iter().enumerate() {
        let version = (n + 2).to_string();
        let previous = (n + 1).to_string();
        proxy.set(fault);
        repo.write("a.yaml", configmap("a", &version).as_bytes());
        let commit = repo.commit(&format!("a {version}"));
        wait_until(
            30 * SECONDS,
            &format!("{fault:?} reported as Stale"),
            || {
                site.try_source_status("apps")
                    .is_some_and(|s| s["state"] == "Stale" && s["last_error"].is_string())
            },
        );
        assert_eq!(cm("a").as_deref(), Some(previous.as_str()), "{fault:?}");
        proxy.set(Fault::None);
        wait_until(60 * SECONDS, &format!("recovery after {fault:?}"), || {
            cm("a").as_deref() == Some(version.as_str())
                && site
                    .try_source_status("apps")
                    .is_some_and(|s| s["state"] == "Ready" && s["last_good"] == commit.as_str())
        });
    }
    assert!(daemon.terminate(), "a clean stop after all faults");
}

#[test]
fn heartbeats_through_every_hub_link_fault_arrive_in_order_none_lost_none_twice() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    let mut last = repo.commit("app 1");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    let agent_key = keygen(&site);
    // The proxy is the hub's address as far as the agent knows, so the hub must answer to that name too.
    let hub_port = outpost_tests::support::free_port();
    let proxy = FaultProxy::start(([127, 0, 0, 1], hub_port).into());
    let names = format!("names = [\"127.0.0.1:{}\"]\n", proxy.port());
    let mut hub = Hub::start_with(site.dir.path(), &agent_key, hub_port, &names);
    site.tables = hub
        .upstream_table()
        .replace(&format!(":{hub_port}\""), &format!(":{}\"", proxy.port()));
    let daemon = site.spawn_daemon();
    let hub_has = |hub: &Hub, commit: &str| {
        hub.agent()["sources"][0]["last_good_revision"].as_str() == Some(commit)
    };
    wait_until(30 * SECONDS, "the hub sees the first revision", || {
        hub_has(&hub, &last)
    });

    let faults = [
        Fault::Drop,
        Fault::Blackhole,
        Fault::CutAfter(200),
        Fault::Delay(3 * SECONDS),
    ];
    for (n, fault) in faults.into_iter().enumerate() {
        proxy.set(fault);
        let version = (n + 2).to_string();
        repo.write("deploy/app.yaml", configmap("app", &version).as_bytes());
        last = repo.commit(&format!("app {version}"));
        wait_until(30 * SECONDS, "the new revision applied", || {
            site.applied_revision("app").as_deref() == Some(last.as_str())
        });
        // A few heartbeat intervals behind the fault.
        std::thread::sleep(3 * SECONDS);
        proxy.set(Fault::None);
        wait_until(
            60 * SECONDS,
            &format!("the hub caught up after {fault:?}"),
            || hub_has(&hub, &last),
        );
    }
    wait_until(30 * SECONDS, "the outbox is empty", || {
        site.status_json()["heartbeat_outbox"] == 0
    });

    // Every heartbeat the agent numbered since the first one the hub kept is there once, in order.
    let seqs: Vec<u64> = hub
        .history()
        .iter()
        .filter_map(|h| h["seq"].as_u64())
        .collect();
    assert!(seqs.len() >= 10, "{seqs:?}");
    let expected: Vec<u64> = (seqs[0]..seqs[0] + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "no heartbeat lost or recorded twice");
    assert_eq!(hub.agent()["dropped"].as_u64().unwrap_or(0), 0);
    assert!(daemon.terminate());
    hub.stop();
}
