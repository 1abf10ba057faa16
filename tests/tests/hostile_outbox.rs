//! The outbox is honest: a 409 that is not the hub's signed refusal of that very heartbeat (a proxy, a man in
//! the middle, a replayed refusal) removes nothing, and a real refusal removes the heartbeat and is counted, in
//! `outpost status` and in the next heartbeat's `dropped`.
//!
//! The hub here is a fake: a real HTTP server on a random loopback port that answers every heartbeat with the
//! 409 the test chooses, signed with a key the agent trusts as `hub_key`, or not signed at all.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::hub::keygen;
use common::{configmap, wait_until, Site};
use outpost_proto::keys::{Pkcs8Document, SigningKey};
use outpost_tests::GitRepo;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    /// A refusal body naming the heartbeat, without a signature.
    Unsigned,
    /// Naming the heartbeat, signed by a key that is not the hub's.
    SignedByAnotherKey,
    /// Signed by the hub key, but naming another seq: a refusal replayed from another heartbeat.
    SignedOtherSeq,
    /// The hub's real refusal: signed, naming this agent and seq.
    Signed,
}

struct FakeHub {
    port: u16,
    answer: Arc<Mutex<Answer>>,
    /// Every heartbeat body received, in order, with the answer it got.
    seen: Arc<Mutex<Vec<(Value, Answer)>>>,
    public_key: String,
}

impl FakeHub {
    fn start() -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let key = Pkcs8Document::generate().unwrap().signing_key().unwrap();
        let other = Pkcs8Document::generate().unwrap().signing_key().unwrap();
        let public_key = key.public_key().to_string();
        let answer = Arc::new(Mutex::new(Answer::Unsigned));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (answer.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let answer = *a.lock().unwrap();
                let signer = if answer == Answer::SignedByAnotherKey {
                    &other
                } else {
                    &key
                };
                if let Some(body) = serve(stream, answer, signer) {
                    s.lock().unwrap().push((body, answer));
                }
            }
        });
        FakeHub {
            port,
            answer,
            seen,
            public_key,
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn seen(&self) -> Vec<(Value, Answer)> {
        self.seen.lock().unwrap().clone()
    }

    fn upstream_table(&self) -> String {
        format!(
            "[upstream]\nurl = \"http://127.0.0.1:{}\"\nhub_key = \"{}\"\nheartbeat_interval = \"1s\"\n",
            self.port, self.public_key
        )
    }
}

/// Reads one request and answers it with a 409; returns the heartbeat body it carried.
fn serve(stream: std::net::TcpStream, answer: Answer, key: &SigningKey) -> Option<Value> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let heartbeat: Value = serde_json::from_slice(&body).ok()?;
    let seq = heartbeat["seq"].as_u64()?;
    let named = if answer == Answer::SignedOtherSeq {
        seq + 1000
    } else {
        seq
    };
    let reply = serde_json::to_vec(&json!({
        "error": "seq_not_newer",
        "message": "heartbeat seq is not above the last accepted seq",
        "agent_id": "test-site",
        "seq": named,
    }))
    .unwrap();
    let mut head = format!(
        "HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.len()
    );
    if answer != Answer::Unsigned {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let headers =
            outpost_proto::signed::sign_response(409, &reply, "application/json", key, now)
                .unwrap();
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    let mut stream = stream;
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(&reply).ok()?;
    Some(heartbeat)
}

fn outbox(site: &Site) -> (u64, u64) {
    let status = site.status_json();
    (
        status["heartbeat_outbox"].as_u64().unwrap_or(0),
        status["heartbeat_dropped"].as_u64().unwrap_or(u64::MAX),
    )
}

#[test]
fn only_the_hubs_signed_refusal_of_that_heartbeat_removes_it() {
    let repo = GitRepo::new();
    repo.write("deploy/app.yaml", configmap("app", "1").as_bytes());
    repo.commit("1");
    let mut site = Site::new();
    site.source("app", &repo.file_url(), "branch = \"main\"", "deploy", "");
    keygen(&site);
    let hub = FakeHub::start();
    site.tables = hub.upstream_table();
    let daemon = site.spawn_daemon();

    // Unsigned 409s, 409s signed by another key, then ones signed by the hub naming another seq: nothing leaves
    // the outbox, nothing is counted, and the oldest heartbeat is sent again and again (with backoff) instead of
    // being dropped.
    for answer in [
        Answer::Unsigned,
        Answer::SignedByAnotherKey,
        Answer::SignedOtherSeq,
    ] {
        hub.set(answer);
        let start = hub.seen().len();
        wait_until(
            Duration::from_secs(60),
            "three answers and three heartbeats queued",
            || hub.seen().len() >= start + 3 && outbox(&site).0 >= 3,
        );
        let (queued, dropped) = outbox(&site);
        assert_eq!(dropped, 0, "{answer:?}: nothing dropped ({queued} queued)");
        let seqs: Vec<u64> = hub.seen()[start..]
            .iter()
            .map(|(h, _)| h["seq"].as_u64().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] == w[1]),
            "{answer:?}: the same oldest heartbeat is retried: {seqs:?}"
        );
        assert!(
            daemon.log().contains("the heartbeat stays queued"),
            "{}",
            daemon.log()
        );
    }

    // The hub's real refusal: each refused heartbeat leaves, is counted, and the next heartbeat reports it.
    let queued_before = outbox(&site).0;
    hub.set(Answer::Signed);
    wait_until(
        Duration::from_secs(60),
        "the outbox drained by refusals",
        || {
            let (queued, dropped) = outbox(&site);
            queued <= 1 && dropped >= queued_before
        },
    );
    let refused: Vec<u64> = hub
        .seen()
        .iter()
        .filter(|(_, a)| *a == Answer::Signed)
        .map(|(h, _)| h["seq"].as_u64().unwrap())
        .collect();
    let (_, dropped) = outbox(&site);
    assert!(
        dropped as usize <= refused.len() && dropped >= queued_before,
        "{dropped} dropped, {} signed refusals sent",
        refused.len()
    );
    wait_until(
        Duration::from_secs(30),
        "a heartbeat that reports the refused ones",
        || {
            hub.seen()
                .iter()
                .any(|(h, _)| h["dropped"].as_u64().unwrap_or(0) >= queued_before)
        },
    );
    let table = String::from_utf8_lossy(&site.run(&["status"]).stdout).to_string();
    assert!(
        table.contains("heartbeats dropped undelivered: "),
        "{table}"
    );
}
