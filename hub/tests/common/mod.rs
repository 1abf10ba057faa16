//! Test fixtures: a hub started in-process on a random loopback port with its own temp dir, agents with
//! fresh keys, and a client that signs heartbeats exactly as an agent does (proto's `sign_request`).

#![allow(dead_code)] // each test file uses a different part of the fixtures

use std::path::PathBuf;

pub mod child;
pub mod postgres;
pub mod proxy;
use std::sync::Arc;

use outpost_hub::config::Config;
use outpost_hub::server::{self, RunningHub};
use outpost_proto::keys::{Pkcs8Document, SigningKey};
use outpost_proto::signed::{sign_request, verify_response, Freshness, ReceivedResponse};
use outpost_proto::wire::{Heartbeat, SourceState, SourceStatus};

pub type TestError = Box<dyn std::error::Error + Send + Sync>;
pub type TestResult = Result<(), TestError>;

pub const JSON: &str = "application/json";
pub const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";
/// The read credential every test hub lists, and its clients present (fleet data needs one by default).
pub const READ_TOKEN: &str = "5f0c2b7e9a41d3c8e6b0f2a4c6e8d0b1a3c5e7f9d1b3a5c7e9f0a2b4c6d8e0f1";

/// The admin credential every test hub lists (issue 18 item 3).
pub const ADMIN_TOKEN: &str = "a1d2m3i4n5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2";

/// The `[[reader]]` table for [`READ_TOKEN`] and the `[[admin]]` table for [`ADMIN_TOKEN`].
pub fn reader_table() -> String {
    use outpost_hub::access::{config_table, Role};
    format!(
        "{}{}",
        config_table(Role::Read, "tests", READ_TOKEN),
        config_table(Role::Admin, "test-admin", ADMIN_TOKEN)
    )
}

/// A bench's knob: the environment variable `name` as a number, or `default`.
pub fn env_knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU seconds of process `pid` so far (from `/proc`), for the benches' CPU figures.
pub fn cpu_secs(pid: u32) -> Result<f64, TestError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').ok_or("bad stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// A heartbeat POST to `base` as `agent` sends it: `body` signed now for the hub name `authority`, which
/// also goes as `Host`.
pub fn heartbeat_request(
    client: &reqwest::Client,
    base: &str,
    authority: &str,
    agent: &Agent,
    body: Vec<u8>,
) -> Result<reqwest::RequestBuilder, TestError> {
    let headers = sign_request(
        "POST",
        authority,
        "/v1/heartbeats",
        &body,
        JSON,
        &agent.key,
        now(),
    )?;
    let mut request = client
        .post(format!("{base}/v1/heartbeats"))
        .header("Host", authority)
        .header("Content-Type", JSON)
        .body(body);
    for (name, value) in &headers {
        request = request.header(*name, value);
    }
    Ok(request)
}

/// Unix seconds now.
pub fn now() -> i64 {
    i64::try_from(outpost_hub::state::now_ms() / 1000).unwrap_or(i64::MAX)
}

/// Installs ring as rustls' process default, which reqwest's `rustls-no-provider` build needs.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An agent identity: an id and a fresh Ed25519 key.
pub struct Agent {
    pub id: String,
    pub key: SigningKey,
}

impl Agent {
    pub fn new(id: &str) -> Result<Agent, TestError> {
        Ok(Agent {
            id: id.to_owned(),
            key: Pkcs8Document::generate()?.signing_key()?,
        })
    }

    /// The `[[agent]]` table enrolling this agent in a hub config.
    pub fn config_table(&self, extra: &str) -> String {
        format!(
            "[[agent]]\nid = \"{}\"\npublic_key = \"{}\"\n{extra}\n",
            self.id,
            self.key.public_key()
        )
    }

    /// A valid heartbeat of this agent.
    pub fn heartbeat(&self, seq: u64, assignment_generation: u64) -> Heartbeat {
        let mut source = SourceStatus::new("platform", SourceState::Ready);
        source.applied_revision = Some(REVISION.into());
        source.last_good_revision = Some(REVISION.into());
        source.object_count = 3;
        Heartbeat {
            schema: outpost_proto::HEARTBEAT_SCHEMA.into(),
            agent_id: self.id.clone(),
            seq,
            boot_id: "6f1c1d2e-8a4b-4c3d-9e8f-0a1b2c3d4e5f".into(),
            observed_at: "2026-09-21T14:13:20Z".into(),
            agent_version: "0.1.0".into(),
            assignment_generation,
            dropped: 0,
            sources: vec![source],
            assignment_error: None,
        }
    }
}

/// A response as the test saw it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Result<serde_json::Value, TestError> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The `error` reason of a refusal.
    pub fn reason(&self) -> Result<String, TestError> {
        Ok(self.json()?["error"]
            .as_str()
            .ok_or("no error reason")?
            .to_owned())
    }

    /// Verifies the hub's response signature with `hub`'s public key.
    pub fn verify(&self, hub: &TestHub) -> TestResult {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let response = ReceivedResponse {
            status: self.status,
            headers: &headers,
            body: &self.body,
        };
        verify_response(&response, &hub.public_key()?, now(), Freshness::default())?;
        Ok(())
    }
}

/// A hub serving from its own temp dir on `127.0.0.1:<random>`.
pub struct TestHub {
    pub dir: tempfile::TempDir,
    pub config: Config,
    running: Option<RunningHub>,
    /// The database of a hub on PostgreSQL (`OUTPOST_HUB_TEST_STORE=postgres`), in `dir/pg`.
    pub pg: Option<postgres::PgCluster>,
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub base: String,
    /// What clients send as `Host`, and hence what heartbeats must sign as `@authority`.
    pub authority: String,
    client: reqwest::Client,
}

impl TestHub {
    /// A plain-HTTP hub whose config is `body` (agents, assignments, ...) plus listen and paths.
    pub async fn start(body: &str) -> Result<TestHub, TestError> {
        let dir = tempfile::tempdir()?;
        TestHub::start_in(dir, body, None).await
    }

    /// Starts a hub in `dir` (reusing its store and key when they exist). With `tls`, serves HTTPS with
    /// `(cert_file, key_file, client TLS config)`.
    pub async fn start_in(
        dir: tempfile::TempDir,
        body: &str,
        tls: Option<(PathBuf, PathBuf, Arc<rustls::ClientConfig>)>,
    ) -> Result<TestHub, TestError> {
        install_crypto_provider();
        let mut text = format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nkey_file = \"{}\"\n",
            dir.path().join("state").display(),
            dir.path().join("hub.key").display()
        );
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {READ_TOKEN}"))?,
        );
        let mut client = reqwest::Client::builder().default_headers(headers);
        let scheme = match &tls {
            Some((cert, key, client_config)) => {
                text.push_str(&format!(
                    "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                    cert.display(),
                    key.display()
                ));
                client = client.tls_backend_preconfigured((**client_config).clone());
                "https"
            }
            None => "http",
        };
        // Top-level keys first: TOML puts everything after a table header into that table.
        let (top, tables) = split_top_level(body);
        let pg = match std::env::var("OUTPOST_HUB_TEST_STORE").as_deref() {
            Ok("postgres") if !body.contains("[store]") => {
                Some(postgres::PgCluster::init(&dir.path().join("pg"))?)
            }
            _ => None,
        };
        let store = pg.as_ref().map(|pg| pg.store_table()).unwrap_or_default();
        let text = format!("{top}\n{text}\n{tables}\n{}\n{store}", reader_table());
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, &text)?;
        let mut config = Config::load(&path)?;
        let running = server::start(config.clone()).await?;
        // What `outpost-hub status` would dial had the config named the port.
        config.listen = running.local_addr;
        let authority = running.local_addr.to_string();
        Ok(TestHub {
            pg,
            base: format!("{scheme}://{authority}"),
            authority,
            running: Some(running),
            dir,
            config,
            client: client.build()?,
        })
    }

    pub fn public_key(&self) -> Result<outpost_proto::keys::PublicKey, TestError> {
        Ok(self.running.as_ref().ok_or("hub stopped")?.public_key)
    }

    /// Stops the hub and returns its dir, so a test can restart it on the same store.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        drop(self.pg.take());
        self.dir
    }

    /// Stops the hub but not its database (if it has one), as when a hub alone goes down.
    pub async fn stop_keeping_store(mut self) -> (tempfile::TempDir, Option<postgres::PgCluster>) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        (self.dir, self.pg.take())
    }

    /// POSTs `body` to /v1/heartbeats signed by `agent` with signature `created` time.
    pub async fn send_signed(
        &self,
        agent: &Agent,
        body: &[u8],
        created: i64,
    ) -> Result<Answer, TestError> {
        let headers = sign_request(
            "POST",
            &self.authority,
            "/v1/heartbeats",
            body,
            JSON,
            &agent.key,
            created,
        )?;
        self.post("/v1/heartbeats", body.to_vec(), &headers).await
    }

    /// Sends `heartbeat` signed now by `agent`.
    pub async fn send(&self, agent: &Agent, heartbeat: &Heartbeat) -> Result<Answer, TestError> {
        self.send_signed(agent, &heartbeat.to_body()?, now()).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<Answer, TestError> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Content-Type", JSON)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        answer(request.send().await?).await
    }

    pub async fn get(&self, path: &str) -> Result<Answer, TestError> {
        answer(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await?,
        )
        .await
    }

    /// An admin API request with [`ADMIN_TOKEN`] (`method` GET, POST, PUT or DELETE).
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Answer, TestError> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {ADMIN_TOKEN}"));
        if let Some(body) = body {
            request = request
                .header("Content-Type", JSON)
                .body(serde_json::to_vec(&body)?);
        }
        answer(request.send().await?).await
    }

    /// The hub's config file with `listen` set to the port it got, for the command-line tools.
    pub fn config_for_tools(&self) -> Result<PathBuf, TestError> {
        let text = std::fs::read_to_string(&self.config.path)?;
        let text = text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{}\"", self.config.listen),
        );
        let path = self.dir.path().join("tools.toml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// The `GET /v1/agents` entry of `id`.
    pub async fn agent_view(&self, id: &str) -> Result<serde_json::Value, TestError> {
        let listing = self.get("/v1/agents").await?.json()?;
        let agents = listing.as_array().ok_or("listing is not an array")?;
        Ok(agents
            .iter()
            .find(|a| a["agent_id"] == id)
            .ok_or_else(|| format!("{id} not listed"))?
            .clone())
    }
}

async fn answer(response: reqwest::Response) -> Result<Answer, TestError> {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| Ok((n.as_str().to_owned(), v.to_str()?.to_owned())))
        .collect::<Result<Vec<_>, TestError>>()?;
    let body = response.bytes().await?.to_vec();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Splits config text into its top-level keys and the `[table]` / `[[array]]` part that follows them.
fn split_top_level(body: &str) -> (String, String) {
    let start = if body.starts_with('[') {
        Some(0)
    } else {
        body.find("\n[").map(|i| i + 1)
    };
    match start {
        Some(at) => (body[..at].to_owned(), body[at..].to_owned()),
        None => (body.to_owned(), String::new()),
    }
}
