//! Kubernetes target benchmark: prints the figures the Kubernetes-target issue asks for. Run with
//! `cargo build --release -p outpost-agent && cargo bench -p outpost-tests --bench kube`
//! (against the API test double; set `OUTPOST_E2E_KUBECONFIG` to run against a real cluster instead).
//!
//! 1,000 objects (800 ConfigMaps, 200 Deployments) in one namespace:
//! - `outpost sync` fresh, then unchanged (the drift check included), then with 10 objects drifted;
//! - `kubectl apply --server-side -f` of the same files into a second namespace, fresh and again unchanged.
//!
//! The double counts requests, so the unchanged cycle's request count and the drifted cycle's re-applies are
//! exact figures, not estimates.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_tests::{GitRepo, KubeDouble};

const CONFIGMAPS: usize = 800;
const DEPLOYMENTS: usize = 200;
const CYCLES: usize = 10;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("kube: benchmark");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let real = std::env::var_os("OUTPOST_E2E_KUBECONFIG").map(PathBuf::from);
    let started = real.is_none().then(KubeDouble::start);
    let double = started.as_ref();
    let kubeconfig = match (&real, double) {
        (Some(k), _) => k.clone(),
        (None, Some(d)) => d.write_kubeconfig(work.path()),
        (None, None) => unreachable!("a double is started when no cluster is given"),
    };
    let against = if double.is_some() {
        "the API test double"
    } else {
        "the real cluster"
    };
    let suffix = std::process::id();
    let ns_agent = format!("bench-outpost-{suffix}");
    let ns_kubectl = format!("bench-kubectl-{suffix}");

    // The agent's repository: the namespace and 1,000 objects, one file each (as kubectl -f <dir> reads them).
    let repo = GitRepo::new();
    repo.write("namespace.yaml", namespace(&ns_agent).as_bytes());
    let manifests = work.path().join("kubectl");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("00-namespace.yaml"), namespace(&ns_kubectl)).unwrap();
    for (name, text) in objects() {
        repo.write(&format!("{name}.yaml"), text.as_bytes());
        let with_ns = text.replacen(
            "metadata:\n",
            &format!("metadata:\n  namespace: {ns_kubectl}\n"),
            1,
        );
        std::fs::write(manifests.join(format!("{name}.yaml")), with_ns).unwrap();
    }
    repo.commit("1,000 objects");

    let config = write_config(work.path(), &repo, &kubeconfig, &ns_agent);
    let outpost = outpost_bin();
    let sync = || {
        let start = Instant::now();
        let out = Command::new(&outpost)
            .args(["--config"])
            .arg(&config)
            .arg("sync")
            .output()
            .unwrap();
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "outpost sync failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        took
    };

    let fresh = sync();
    if let Some(d) = double {
        d.reset_requests();
    }
    let noop = sync();
    let noop_requests = double.map(|d| d.requests());
    let (cycle, cycle_cpu, cycle_requests) = daemon_cycles(&config, double);
    // The double's own time to answer the cycle's lists, which a real API server spends instead.
    let server_time = double.map(|d| {
        let accept =
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        let selector = "labelSelector=outpost.dev%2Fsource%3Dbench";
        let paths = [
            format!("/api/v1/namespaces/{ns_agent}/configmaps?{selector}"),
            format!("/apis/apps/v1/namespaces/{ns_agent}/deployments?{selector}"),
            format!("/api/v1/namespaces?{selector}"),
        ];
        let mut times = Vec::new();
        for _ in 0..CYCLES {
            let start = Instant::now();
            for p in &paths {
                let r = d.send("GET", p, Some(&d.token()), accept, None, None);
                assert_eq!(r.status, 200);
            }
            times.push(start.elapsed());
        }
        times.sort();
        times[CYCLES / 2]
    });

    // 10 objects changed by hand at the site.
    for i in 0..10 {
        edit(double, &kubeconfig, &ns_agent, &format!("cm-{i:04}"));
    }
    if let Some(d) = double {
        d.reset_requests();
    }
    let drifted = sync();
    let drift_requests = double.map(|d| d.requests());

    let rss = daemon_rss(&outpost, &config);

    let kubectl = |what: &str| {
        let start = Instant::now();
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "apply",
                "--server-side",
                "--field-manager=kubectl-bench",
                "-f",
            ])
            .arg(&manifests)
            .output()
            .expect("kubectl is installed");
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "kubectl {what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    };
    let kubectl_fresh = kubectl("fresh apply");
    let kubectl_noop = kubectl("re-apply");

    println!(
        "kube benchmark against {against}: {CONFIGMAPS} ConfigMaps + {DEPLOYMENTS} Deployments"
    );
    println!("  outpost sync, fresh apply:        {}", ms(fresh));
    println!("  kubectl apply --server-side:      {}", ms(kubectl_fresh));
    println!(
        "    ratio:                          {:.3} (target <= 0.5)",
        fresh.as_secs_f64() / kubectl_fresh.as_secs_f64()
    );
    println!("  kubectl re-apply, unchanged:      {}", ms(kubectl_noop));
    println!(
        "  daemon's unchanged cycle:         {} (median of {CYCLES} passes in one process: Git probe + drift check)",
        ms(cycle)
    );
    println!(
        "    ratio:                          {:.3} (target <= 0.05)",
        cycle.as_secs_f64() / kubectl_noop.as_secs_f64()
    );
    if let Some(n) = cycle_requests {
        println!("    API requests per cycle:         {n:.1}");
    }
    if let Some(t) = server_time {
        println!(
            "    of which the double answering:  {} (the same 3 lists fetched by a plain client)",
            ms(t)
        );
        println!(
            "    the agent's CPU per cycle:      {} (its thread's CPU time, Git probe excluded) -> ratio {:.4}",
            ms(cycle_cpu),
            cycle_cpu.as_secs_f64() / kubectl_noop.as_secs_f64()
        );
    }
    println!(
        "  outpost sync, unchanged (a whole process: start, store, probe, check): {}",
        ms(noop)
    );
    if let Some(r) = &noop_requests {
        let writes = r.iter().filter(|r| r.method != "GET").count();
        println!(
            "    API requests in the cycle:      {} ({} writes; target <= kinds + 1 = 4)",
            r.len(),
            writes
        );
    }
    println!("  `outpost run` after 5 s of 2 s cycles over the 1,000 objects: {rss}");
    println!("  outpost sync, 10 objects drifted: {}", ms(drifted));
    if let Some(r) = &drift_requests {
        let applies: Vec<&str> = r
            .iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| r.path.as_str())
            .collect();
        let exact = applies.len() == 10
            && (0..10).all(|i| applies.iter().any(|p| p.contains(&format!("/cm-{i:04}?"))));
        println!(
            "    objects re-applied:             {} ({}; target exactly those 10)",
            applies.len(),
            if exact {
                "exactly the 10 edited"
            } else {
                "NOT the 10 edited"
            }
        );
    }
}

/// What the daemon pays every interval when nothing changed: `CYCLES` passes of the source in this process, as
/// `outpost run` does them. Returns the median pass time and the API requests per pass.
fn daemon_cycles(config: &Path, double: Option<&KubeDouble>) -> (Duration, Duration, Option<f64>) {
    use outpost_agent::reconcile::{PassOutcome, Reconciler};
    outpost_agent::install_crypto_provider();
    let config = outpost_agent::config::Config::load(config).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = std::sync::Arc::new(
            outpost_agent::store::Store::open(&config.agent.state_dir).unwrap(),
        );
        let k = &config.kubernetes;
        let cluster = outpost_agent::deploy::kube::client::connect(
            k.kubeconfig.as_deref(),
            None,
            &k.field_manager,
            k.request_timeout,
        )
        .await
        .unwrap();
        let targets = outpost_agent::deploy::TargetContext {
            agent_id: config.agent.id.clone(),
            store: store.clone(),
            cluster: Some(std::sync::Arc::new(cluster)),
            leader: None,
            concurrency: k.concurrency,
        };
        let r = Reconciler::for_source(&config, &config.sources[0], &targets).unwrap();
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        // One pass to open the connection, as a running daemon already has it.
        r.pass(&shutdown).await.unwrap();
        if let Some(d) = double {
            d.reset_requests();
        }
        let mut times = Vec::new();
        let cpu_start = thread_cpu();
        for _ in 0..CYCLES {
            let start = Instant::now();
            let outcome = r.pass(&shutdown).await.unwrap();
            times.push(start.elapsed());
            assert!(
                matches!(outcome, PassOutcome::Unchanged { .. }),
                "{outcome:?}"
            );
        }
        let cpu = (thread_cpu() - cpu_start) / CYCLES as u32;
        times.sort();
        let requests = double.map(|d| d.requests().len() as f64 / CYCLES as f64);
        (times[CYCLES / 2], cpu, requests)
    })
}

/// Memory of the daemon keeping 1,000 objects in check: VmRSS and its peak, after a few unchanged cycles.
fn daemon_rss(bin: &Path, config: &Path) -> String {
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let pid = child.id();
    let field = |name: &str| outpost_tests::support::proc_status_field(pid, name);
    // Read while it runs: after the kill, /proc no longer has it.
    let figure = format!("VmRSS {} (peak {})", field("VmRSS:"), field("VmHWM:"));
    let _ = child.kill();
    let _ = child.wait();
    figure
}

/// CPU time of the calling thread. The cycles run on a current-thread runtime, so this is the agent's work
/// (the double answers on its own threads; the Git probe runs on a blocking-pool thread and is not counted).
fn thread_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer we own; RUSAGE_THREAD is valid on Linux.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn ms(d: Duration) -> String {
    format!("{:>9.1} ms", d.as_secs_f64() * 1000.0)
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

fn objects() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..CONFIGMAPS {
        out.push((
            format!("cm-{i:04}"),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:04}\ndata:\n  key: \"value {i}\"\n  other: \"{}\"\n", "x".repeat(64)),
        ));
    }
    for i in 0..DEPLOYMENTS {
        out.push((
            format!("web-{i:04}"),
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i:04}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: web-{i:04}\n  template:\n    metadata:\n      labels:\n        app: web-{i:04}\n    spec:\n      containers:\n      - name: main\n        image: nginx:1.27\n"),
        ));
    }
    out
}

fn write_config(dir: &Path, repo: &GitRepo, kubeconfig: &Path, namespace: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nid = \"bench\"\nstate_dir = \"{}\"\n[[source]]\nname = \"bench\"\nurl = \"{}\"\nbranch = \"{}\"\ntarget = \"kubernetes\"\nnamespace = \"{namespace}\"\ninterval = \"2s\"\nwait = false\ntimeout = \"5m\"\n[kubernetes]\nkubeconfig = \"{}\"\n",
            dir.join("state").display(),
            repo.file_url(),
            repo.branch(),
            kubeconfig.display()
        ),
    )
    .unwrap();
    path
}

/// Changes one ConfigMap as another manager would.
fn edit(double: Option<&KubeDouble>, kubeconfig: &Path, ns: &str, name: &str) {
    let patch = serde_json::json!({"data": {"key": "edited at the site"}});
    match double {
        Some(d) => {
            let (status, body) = d.request(
                "PATCH",
                &format!("/api/v1/namespaces/{ns}/configmaps/{name}?fieldManager=site-operator"),
                Some("application/merge-patch+json"),
                Some(&patch),
            );
            assert_eq!(status, 200, "{body}");
        }
        None => {
            let out = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args([
                    "patch",
                    "configmap",
                    name,
                    "-n",
                    ns,
                    "--type",
                    "merge",
                    "-p",
                ])
                .arg(patch.to_string())
                .args(["--field-manager", "site-operator"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The release `outpost` binary (the bench measures what ships), or `OUTPOST_BIN`.
fn outpost_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTPOST_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap();
    let bin = target.join("release").join("outpost");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p outpost-agent` first",
        bin.display()
    );
    bin
}
