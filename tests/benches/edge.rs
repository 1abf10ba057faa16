//! Edge benchmarks: prints the figures the sync-core issue asks for. Run with
//! `cargo build --release -p outpost-agent && cargo bench -p outpost-tests --bench edge`.
//!
//! - bytes and requests of one unchanged poll against `git http-backend`;
//! - CPU time per unchanged poll (a child process runs the poll loop, so the server's CPU is not counted);
//! - fetch + build + write of a 1,000-object repository;
//! - idle and peak RSS of `outpost run` with three sources, and its startup time to `READY=1` with them cached;
//! - release binary size.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_agent::config::Config;
use outpost_agent::reconcile::{PassOutcome, Reconciler};
use outpost_agent::store::Store;
use outpost_tests::{GitHttpServer, GitRepo};

const POLLS: u32 = 2000;

/// The directory target needs no cluster.
fn targets(store: &Arc<Store>) -> outpost_agent::deploy::TargetContext {
    outpost_agent::deploy::TargetContext {
        agent_id: "bench".into(),
        store: store.clone(),
        cluster: None,
        leader: None,
        concurrency: 8,
    }
}

fn main() {
    outpost_agent::install_crypto_provider();
    let args: Vec<String> = std::env::args().collect();
    // Child mode: `edge --poll-loop CONFIG N` runs N unchanged passes and prints its own CPU time.
    if let Some(i) = args.iter().position(|a| a == "--poll-loop") {
        poll_loop(Path::new(&args[i + 1]), args[i + 2].parse().unwrap());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("edge: benchmark");
        return;
    }

    let repo = GitRepo::new();
    for i in 0..100 {
        let docs: String = (0..10)
            .map(|j| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}-{j}\n  namespace: shop\ndata:\n  key: \"value {i} {j}\"\n  other: \"{}\"\n", "x".repeat(64)))
            .collect();
        repo.write(&format!("deploy/group-{i:03}.yaml"), docs.as_bytes());
    }
    let head = repo.commit("1000 objects");
    let server = GitHttpServer::start(repo.serve_dir());
    let url = server.url_for(repo.name());
    let work = tempfile::tempdir().unwrap();
    let config_path = write_config(work.path(), &[("shop", &url)], "1m");
    let config = Config::load(&config_path).unwrap();

    // Fetch + build + write of 1,000 objects, from an empty state directory.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (cold, outcome) = rt.block_on(async {
        let store = Arc::new(Store::open(&config.agent.state_dir).unwrap());
        let r = Reconciler::for_source(&config, &config.sources[0], &targets(&store)).unwrap();
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let start = Instant::now();
        let outcome = r.pass(&shutdown).await.unwrap();
        (start.elapsed(), outcome)
    });
    assert_eq!(
        outcome,
        PassOutcome::Applied {
            revision: head,
            objects: 1000
        }
    );
    println!(
        "fetch + build + write, 1,000 objects (100 files): {:.1} ms",
        cold.as_secs_f64() * 1e3
    );
    drop(rt);

    // One unchanged poll, as the server sees it, and on the wire (through a byte-counting TCP relay, so HTTP
    // headers are included). The relayed config shares the state directory, so the poll is unchanged.
    server.reset_counters();
    let relay = Relay::start(server.port());
    let relayed_url = url.replace(
        &format!(":{}/", server.port()),
        &format!(":{}/", relay.port),
    );
    let relayed_path = work.path().join("relayed.toml");
    let relayed_text = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace(&url, &relayed_url);
    std::fs::write(&relayed_path, relayed_text).unwrap();
    let relayed = Config::load(&relayed_path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(Store::open(&relayed.agent.state_dir).unwrap());
        let r = Reconciler::for_source(&relayed, &relayed.sources[0], &targets(&store)).unwrap();
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        assert!(matches!(
            r.pass(&shutdown).await.unwrap(),
            PassOutcome::Unchanged { .. }
        ));
    });
    drop(rt);
    let requests = server.requests();
    let bytes: u64 = requests
        .iter()
        .map(|r| r.request_bytes + r.response_bytes)
        .sum();
    println!(
        "unchanged poll against git http-backend: {} request(s), {} bytes (request {} + response {})",
        requests.len(),
        bytes,
        requests.iter().map(|r| r.request_bytes).sum::<u64>(),
        requests.iter().map(|r| r.response_bytes).sum::<u64>()
    );

    // CPU per unchanged poll, measured in a child process so the HTTP server's work is not counted.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--poll-loop",
            config_path.to_str().unwrap(),
            &POLLS.to_string(),
        ])
        .output()
        .unwrap();
    let (up, down) = relay.totals();
    println!(
        "unchanged poll on the wire (TCP payload, HTTP headers included): {} bytes ({up} sent, {down} received)",
        up + down
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    release_binary_figures(&url, work.path());
}

fn poll_loop(config_path: &Path, polls: u32) {
    let config = Config::load(config_path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(Store::open(&config.agent.state_dir).unwrap());
        let r: Reconciler = Reconciler::for_source(&config, &config.sources[0], &targets(&store)).unwrap();
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        r.pass(&shutdown).await.unwrap(); // warm: client built, files cached
        let cpu0 = cpu_seconds("self");
        let wall0 = Instant::now();
        for _ in 0..polls {
            assert!(matches!(r.pass(&shutdown).await.unwrap(), PassOutcome::Unchanged { .. }));
        }
        let cpu = cpu_seconds("self") - cpu0;
        println!(
            "CPU per unchanged poll (probe + drift check of 1,000 objects, {polls} polls, debug-free bench build): {:.3} ms CPU, {:.3} ms wall",
            cpu * 1e3 / f64::from(polls),
            wall0.elapsed().as_secs_f64() * 1e3 / f64::from(polls)
        );
    });
}

/// utime + stime of a process from /proc, in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // Fields 14 and 15 of stat(5), counted from the state field (3) here.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn write_config(dir: &Path, sources: &[(&str, &str)], interval: &str) -> PathBuf {
    let mut text = format!(
        "[agent]\nid = \"bench\"\nstate_dir = \"{}\"\n",
        dir.join("state").display()
    );
    for (name, url) in sources {
        text.push_str(&format!(
            "[[source]]\nname = \"{name}\"\nurl = \"{url}\"\nbranch = \"main\"\npath = \"deploy\"\ninterval = \"{interval}\"\ntarget = \"directory:{}\"\n",
            dir.join("manifests").display()
        ));
    }
    let path = dir.join(format!("agent-{}.toml", sources.len()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Size of the release binary and the idle RSS of `outpost run` with three sources, small and large.
fn release_binary_figures(url: &str, work: &Path) {
    // target/release/outpost (glibc) and, when built, the static musl binary that edge boxes run.
    let target_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap();
    let bins: Vec<PathBuf> = [
        target_dir.join("release/outpost"),
        target_dir.join("x86_64-unknown-linux-musl/release/outpost"),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .collect();
    if bins.is_empty() {
        println!("release binary: not built; run `cargo build --release -p outpost-agent` first for size and RSS");
        return;
    }
    let small = GitRepo::new();
    for (i, kind) in ["Namespace", "ConfigMap", "Service", "ServiceAccount"]
        .iter()
        .enumerate()
    {
        small.write(
            &format!("deploy/{i}.yaml"),
            format!("apiVersion: v1\nkind: {kind}\nmetadata:\n  name: small-{i}\n").as_bytes(),
        );
    }
    small.commit("4 objects");
    let small_server = GitHttpServer::start(small.serve_dir());
    for (n, bin) in bins.iter().enumerate() {
        let size = std::fs::metadata(bin).unwrap().len();
        println!(
            "release binary {}: {:.2} MiB",
            bin.display(),
            size as f64 / (1024.0 * 1024.0)
        );
        idle_rss(
            bin,
            &small_server.url_for(small.name()),
            &work.join(format!("rss-small-{n}")),
            "3 sources of 4 objects each",
        );
        idle_rss(
            bin,
            url,
            &work.join(format!("rss-large-{n}")),
            "3 sources of 1,000 objects each",
        );
        peak_rss_of_first_sync(bin, url, &work.join(format!("peak-{n}")));
    }
}

fn idle_rss(bin: &Path, url: &str, dir: &Path, label: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let config = write_config(dir, &[("one", url), ("two", url), ("three", url)], "1m");
    let mut child = Command::new(bin)
        .args(["--config", config.to_str().unwrap(), "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let applied = |s: &str| dir.join("manifests").join(format!("{s}.yaml")).exists();
    while Instant::now() < deadline && !["one", "two", "three"].iter().all(|s| applied(s)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Settle: idle blocking threads exit (2 s keep-alive), buffers are flushed.
    std::thread::sleep(Duration::from_secs(5));
    let pid = child.id();
    let field = |name: &str| outpost_tests::support::proc_status_field(pid, name);
    println!(
        "idle `outpost run`, {label}: VmRSS {} (anonymous {}, file-backed {} of which most is the binary's own code; peak {}), {} threads",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("VmHWM:"),
        field("Threads:")
    );
    let _ = child.kill();
    let _ = child.wait();
    startup_to_ready(bin, &config, label);
}

/// Peak RSS (the kernel's `ru_maxrss`) of `outpost sync` fetching, building and writing one 1,000-object
/// repository into an empty state directory: the most memory a sync needs.
fn peak_rss_of_first_sync(bin: &Path, url: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let config = write_config(dir, &[("big", url)], "1m");
    let (_, peak_kib) = outpost_tests::support::run_peak_rss(
        Command::new(bin)
            .args(["--config", config.to_str().unwrap(), "sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(
        dir.join("manifests/big.yaml").exists(),
        "the sync wrote its file"
    );
    println!(
        "peak RSS of `outpost sync`, one 1,000-object repository, empty state: {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
}

/// Time from spawning `outpost run` to its `READY=1`, with the three sources' last good revisions in the store
/// (the run above left them there): store open, every last good bundle re-applied, the main loop running.
fn startup_to_ready(bin: &Path, config: &Path, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut child = Command::new(bin)
            .args(["--config", config.to_str().unwrap(), "run"])
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut buf = [0u8; 512];
        loop {
            let n = socket.recv(&mut buf).expect("READY=1 within 30 s");
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break;
            }
        }
        times.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort();
    println!(
        "startup to READY=1, {label} cached: median {:.1} ms (min {:.1}, max {:.1}, 5 starts)",
        times[2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[4].as_secs_f64() * 1e3
    );
}

/// A TCP relay on loopback that counts the bytes passing each way.
struct Relay {
    port: u16,
    counts: Arc<std::sync::Mutex<(u64, u64)>>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
        let shared = counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = std::net::TcpStream::connect(("127.0.0.1", target)).unwrap();
                for (mut from, mut to, upstream) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let counts = shared.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = std::io::Read::read(&mut from, &mut buf) {
                            if n == 0 || std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                                break;
                            }
                            let mut c = counts.lock().unwrap();
                            if upstream {
                                c.0 += n as u64
                            } else {
                                c.1 += n as u64
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Relay { port, counts }
    }

    fn totals(&self) -> (u64, u64) {
        *self.counts.lock().unwrap()
    }
}
