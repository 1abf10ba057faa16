//! A real `outpost-hub`, in-process on a random port, for the suites where agents send it heartbeats.
#![allow(dead_code)]

use std::io::{Read, Write};

use serde_json::Value;

use super::Site;

pub struct Hub {
    rt: tokio::runtime::Runtime,
    dir: std::path::PathBuf,
    /// The `hub.toml` the next [`Hub::start_again`] writes; tests append assignments or change keys.
    pub config_text: String,
    running: Option<outpost_hub::server::RunningHub>,
}

impl Hub {
    pub fn start(dir: &std::path::Path, agent_key: &str, port: u16) -> Hub {
        Self::start_with(dir, agent_key, port, "")
    }

    /// [`Hub::start`] with more top-level `hub.toml` lines, e.g. `names = [...]`.
    pub fn start_with(dir: &std::path::Path, agent_key: &str, port: u16, extra: &str) -> Hub {
        outpost_agent::install_crypto_provider();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let config_text = format!(
            "{extra}public_read = true\nlisten = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\nkey_file = \"{}\"\nheartbeat_interval = \"1s\"\n[[agent]]\nid = \"test-site\"\npublic_key = \"{agent_key}\"\n",
            dir.join("hub-state").display(),
            dir.join("hub.key").display()
        );
        let mut hub = Hub {
            rt,
            dir: dir.to_path_buf(),
            config_text,
            running: None,
        };
        hub.start_again();
        hub
    }

    pub fn start_again(&mut self) {
        let path = self.dir.join("hub.toml");
        std::fs::write(&path, &self.config_text).unwrap();
        let config = outpost_hub::config::Config::load(&path).unwrap();
        self.running = Some(
            self.rt
                .block_on(outpost_hub::server::start(config))
                .unwrap(),
        );
    }

    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            self.rt.block_on(running.shutdown());
        }
    }

    pub fn port(&self) -> u16 {
        self.running.as_ref().unwrap().local_addr.port()
    }

    /// The agent's `[upstream]` table pointing at this hub.
    pub fn upstream_table(&self) -> String {
        format!(
            "[upstream]\nurl = \"http://127.0.0.1:{}\"\nhub_key = \"{}\"\nheartbeat_interval = \"1s\"\n",
            self.port(),
            self.public_key()
        )
    }

    pub fn public_key(&self) -> String {
        self.running.as_ref().unwrap().public_key.to_string()
    }

    /// The hub's view of our agent, from `GET /v1/agents`.
    pub fn agent(&self) -> Value {
        let all = self.get_json("/v1/agents");
        let list = all.get("agents").cloned().unwrap_or(all);
        list.as_array()
            .and_then(|a| a.iter().find(|x| x["agent_id"] == "test-site").cloned())
            .unwrap_or(Value::Null)
    }

    /// Every heartbeat the hub kept of our agent, oldest first, from `GET /v1/agents/test-site` page by page
    /// (each page is the next older one, named by the previous page's `next_before`).
    pub fn history(&self) -> Vec<Value> {
        let mut pages = Vec::new();
        let mut path = "/v1/agents/test-site?limit=100".to_owned();
        loop {
            let detail = self.get_json(&path);
            let page: Vec<Value> = detail["history"]
                .as_array()
                .map(|h| h.iter().map(|e| e["heartbeat"].clone()).collect())
                .unwrap_or_default();
            pages.push(page);
            match detail["next_before"].as_u64() {
                Some(before) => path = format!("/v1/agents/test-site?limit=100&before={before}"),
                None => break,
            }
        }
        pages.into_iter().rev().flatten().collect()
    }

    pub fn get_json(&self, path: &str) -> Value {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port())).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        let body = if text
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }
}

pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// `outpost keygen` for the site; returns the public key it prints.
pub fn keygen(site: &Site) -> String {
    let out = site.run(&["keygen"]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string()
}
