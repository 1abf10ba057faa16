//! Replays the recorded kube-apiserver transcripts against a [`KubeDouble`] and compares
//! the *shape* of every answer (status code, kind/apiVersion, Status reason/details/causes,
//! top-level and metadata keys, list item names, plain text), ignoring the volatile values
//! the transcripts' README lists.
//!
//! Values the real server generated (resourceVersions, continue tokens) reappear in later
//! requests, so the replay learns a recorded->actual mapping from each answer and rewrites
//! the requests that quote them.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use outpost_tests::kube_double::{transcripts_dir, RawResponse};
use outpost_tests::KubeDouble;
use serde_json::Value;

/// Recording order (later files depend on state from earlier ones).
pub const ORDER: &[&str] = &[
    "discovery",
    "discovery-groupversions",
    "ssa-create-namespace",
    "ssa-configmap-missing-namespace",
    "ssa-unknown-kind",
    "ssa-configmap-create-update-noop",
    "ssa-conflict",
    "ssa-invalid",
    "crd-lifecycle",
    "dry-run",
    "list-by-label",
    "delete",
    "deployment-status",
    "status-subresource",
    "lease",
    "watch",
    "errors-auth",
];

pub fn load(name: &str) -> Vec<Value> {
    let path = transcripts_dir().join(format!("{name}.json"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("transcript"))
        .expect("transcript JSON");
    doc["exchanges"].as_array().expect("exchanges").clone()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn item_names(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// How strictly a list answer is compared.
#[derive(Clone, Copy, PartialEq)]
pub enum Lists {
    /// Same item names in the same order.
    Names,
    /// Only kind/apiVersion (for objects the double does not simulate, e.g. Pods).
    KindOnly,
}

/// Compares one answer with the recorded one; `Err` says what differs.
pub fn compare(expected: &Value, actual: &RawResponse, lists: Lists) -> Result<(), String> {
    let want_status = expected["status"].as_u64().unwrap_or(0) as u16;
    if actual.status != want_status {
        return Err(format!(
            "status {} != recorded {want_status}; body {}",
            actual.status, actual.body
        ));
    }
    let want_ct = expected["headers"]["Content-Type"].as_str().unwrap_or("");
    if want_ct.replace(' ', "") != actual.content_type.replace(' ', "") {
        return Err(format!(
            "content type {:?} != recorded {want_ct:?}",
            actual.content_type
        ));
    }
    let want = &expected["body"];
    if let Some(text) = want.as_str() {
        return (actual.body.trim() == text.trim())
            .then_some(())
            .ok_or_else(|| format!("text {:?} != recorded {text:?}", actual.body));
    }
    let got: Value = serde_json::from_str(&actual.body)
        .map_err(|e| format!("answer is not JSON ({e}): {}", actual.body))?;
    compare_json(want, &got, lists)
}

pub fn compare_json(want: &Value, got: &Value, lists: Lists) -> Result<(), String> {
    for k in ["kind", "apiVersion"] {
        if want.get(k) != got.get(k) {
            return Err(format!(
                "{k} {:?} != recorded {:?}",
                got.get(k),
                want.get(k)
            ));
        }
    }
    if lists == Lists::KindOnly {
        return Ok(());
    }
    if want["kind"] == "Status" {
        for k in ["status", "reason", "code", "message"] {
            if want.get(k) != got.get(k) {
                return Err(format!(
                    "Status {k} {:?} != recorded {:?}",
                    got.get(k),
                    want.get(k)
                ));
            }
        }
        for k in ["kind", "group", "name"] {
            if want["details"].get(k) != got["details"].get(k) {
                return Err(format!(
                    "details.{k} {:?} != recorded {:?}",
                    got["details"].get(k),
                    want["details"].get(k)
                ));
            }
        }
        let causes = |v: &Value| -> Vec<(Value, Value)> {
            v["details"]["causes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| (c["reason"].clone(), c["field"].clone()))
                .collect()
        };
        if causes(want) != causes(got) {
            return Err(format!(
                "causes {:?} != recorded {:?}",
                causes(got),
                causes(want)
            ));
        }
        return Ok(());
    }
    if keys(want) != keys(got) {
        return Err(format!(
            "top-level keys {:?} != recorded {:?}",
            keys(got),
            keys(want)
        ));
    }
    if keys(&want["metadata"]) != keys(&got["metadata"]) {
        return Err(format!(
            "metadata keys {:?} != recorded {:?}",
            keys(&got["metadata"]),
            keys(&want["metadata"])
        ));
    }
    if want.get("items").is_some() {
        if item_names(want) != item_names(got) {
            return Err(format!(
                "items {:?} != recorded {:?}",
                item_names(got),
                item_names(want)
            ));
        }
        let pairs = want["items"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(got["items"].as_array().into_iter().flatten());
        for (w, g) in pairs {
            if keys(w) != keys(g) || keys(&w["metadata"]) != keys(&g["metadata"]) {
                return Err(format!("item shape {g} != recorded {w}"));
            }
        }
    }
    Ok(())
}

/// Rewrites recorded resourceVersions and continue tokens to the double's.
#[derive(Default)]
pub struct Mapping(HashMap<String, String>);

impl Mapping {
    /// Learns from a recorded answer and the double's answer to the same request.
    pub fn learn(&mut self, want: &Value, got: &Value) {
        for (w, g) in [
            (
                &want["metadata"]["resourceVersion"],
                &got["metadata"]["resourceVersion"],
            ),
            (&want["metadata"]["continue"], &got["metadata"]["continue"]),
        ] {
            if let (Some(w), Some(g)) = (w.as_str(), g.as_str()) {
                if !w.is_empty() {
                    self.0.insert(w.to_string(), g.to_string());
                }
            }
        }
    }

    pub fn path(&self, path: &str) -> String {
        let Some((base, query)) = path.split_once('?') else {
            return path.to_string();
        };
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, v)) if k == "resourceVersion" || k == "continue" => {
                    format!("{k}={}", self.0.get(v).map_or(v, String::as_str))
                }
                _ => p.to_string(),
            })
            .collect();
        format!("{base}?{}", params.join("&"))
    }

    pub fn body(&self, body: &Value) -> Value {
        let mut b = body.clone();
        if let Some(rv) = b["metadata"]["resourceVersion"].as_str() {
            if let Some(mapped) = self.0.get(rv) {
                b["metadata"]["resourceVersion"] = Value::String(mapped.clone());
            }
        }
        b
    }
}

/// Sends a recorded request (with `token`) after rewriting recorded values.
pub fn send(double: &KubeDouble, ex: &Value, token: Option<&str>, map: &Mapping) -> RawResponse {
    let req = &ex["request"];
    let method = req["method"].as_str().expect("method");
    let path = map.path(req["path"].as_str().expect("path"));
    let accept = req["headers"]["Accept"]
        .as_str()
        .unwrap_or("application/json");
    let ct = req["headers"]["Content-Type"].as_str();
    let body = match &req["body"] {
        Value::Null => None,
        // YAML text is sent as-is (ssa-create-namespace sends the apply as YAML once).
        Value::String(text) => Some(text.clone().into_bytes()),
        v => Some(map.body(v).to_string().into_bytes()),
    };
    double.send(method, &path, token, accept, ct, body)
}

/// Sends `ex` until the answer matches `want` (the last recorded poll) or 5 s pass.
fn poll_until(
    double: &KubeDouble,
    ex: &Value,
    want: &Value,
    map: &Mapping,
) -> Result<RawResponse, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = send(double, ex, Some(&double.token()), map);
        match compare(&want["response"], &got, Lists::Names) {
            Ok(()) => return Ok(got),
            Err(e) if Instant::now() > deadline => return Err(format!("never matched: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// (type, object name) of each streamed watch line.
fn events(body: &str) -> Vec<(String, String)> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("watch line JSON");
            (
                v["type"].as_str().unwrap_or("").to_string(),
                v["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

fn recorded_events(ex: &Value) -> Vec<(String, String)> {
    ex["response"]["body"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["type"].as_str().unwrap_or("").to_string(),
                v["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

fn is_poll(ex: &Value) -> bool {
    let note = ex["note"].as_str().unwrap_or("");
    note.starts_with("poll") || note.starts_with("discovery poll")
}

/// Replays every transcript in recording order against one double; returns the differences.
pub fn replay_all(double: &KubeDouble) -> Vec<String> {
    let mut failures = Vec::new();
    let mut map = Mapping::default();
    let admin = double.token();
    let mut sa_token: Option<String> = None;
    for file in ORDER {
        let exchanges = load(file);
        let mut i = 0;
        while i < exchanges.len() {
            let ex = &exchanges[i];
            let note = ex["note"].as_str().unwrap_or("");
            let label = format!(
                "{file}[{i}] {} {}",
                ex["request"]["method"], ex["request"]["path"]
            );
            let mut fail = |e: String| failures.push(format!("{label}: {e}"));

            // Polls are timing-dependent (kube-controller-manager vs. the simulated one): poll
            // until the answer matches the last recorded poll of the run, skip the middle ones.
            if is_poll(ex) {
                let mut last = i;
                while last + 1 < exchanges.len()
                    && is_poll(&exchanges[last + 1])
                    && exchanges[last + 1]["request"]["path"] == ex["request"]["path"]
                {
                    last += 1;
                }
                match poll_until(double, ex, &exchanges[last], &map) {
                    Ok(got) => map.learn(&exchanges[last]["response"]["body"], &got.json()),
                    Err(e) => fail(e),
                }
                i = last + 1;
                continue;
            }

            // Watches: open the stream, send the requests recorded "during the watch" while
            // it is open, then compare the streamed (type, name) sequence.
            if ex["request"]["path"]
                .as_str()
                .unwrap_or("")
                .contains("watch=")
            {
                let during: Vec<usize> = (i + 1..exchanges.len())
                    .take_while(|j| {
                        exchanges[*j]["note"]
                            .as_str()
                            .unwrap_or("")
                            .contains(&format!("sent during the watch at exchanges[{i}]"))
                    })
                    .collect();
                let got = std::thread::scope(|s| {
                    let watch = s.spawn(|| send(double, ex, Some(&admin), &map));
                    std::thread::sleep(Duration::from_millis(200));
                    for j in &during {
                        let got = send(double, &exchanges[*j], Some(&admin), &map);
                        if let Err(e) = compare(&exchanges[*j]["response"], &got, Lists::Names) {
                            failures.push(format!("{file}[{j}]: {e}"));
                        }
                    }
                    watch.join().expect("watch thread")
                });
                let mut fail = |e: String| failures.push(format!("{label}: {e}"));
                if got.status != 200 {
                    fail(format!("watch status {}", got.status));
                } else if events(&got.body) != recorded_events(ex) {
                    fail(format!(
                        "events {:?} != recorded {:?}",
                        events(&got.body),
                        recorded_events(ex)
                    ));
                }
                i += 1 + during.len();
                continue;
            }

            let token = if note.contains("Bearer wrong-token") {
                // The 401 exchange was recorded with a deliberately wrong token.
                "wrong-token".to_string()
            } else if note.contains("with the ServiceAccount token") {
                // Restricted exchanges use the token this replay obtained from TokenRequest.
                sa_token.clone().unwrap_or_default()
            } else {
                admin.clone()
            };
            let got = send(double, ex, Some(&token), &map);
            // Lists of ReplicaSets/Pods: the double does not simulate those objects (no
            // ReplicaSet or Pod controller), so only the list kind is compared.
            let lists = if ex["request"]["path"]
                .as_str()
                .is_some_and(|p| p.contains("/replicasets?") || p.contains("/pods?"))
            {
                Lists::KindOnly
            } else {
                Lists::Names
            };
            if note.contains("FILTERED") {
                // The recorder kept only the example.com entry: that entry must be present
                // and identical; the rest of the list is checked by discovery.json.
                let want = &ex["response"]["body"]["items"][0];
                let body = got.json();
                let found = body["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|it| it["metadata"]["name"] == want["metadata"]["name"]);
                if found != Some(want) {
                    fail(format!("aggregated entry {found:?} != recorded {want}"));
                }
            } else if let Err(e) = compare(&ex["response"], &got, lists) {
                fail(e);
            }
            let body = got.json();
            if ex["response"]["body"]["kind"] == "TokenRequest" {
                // The recorded token is redacted; keep the one the double minted.
                sa_token = body["status"]["token"].as_str().map(str::to_string);
            }
            map.learn(&ex["response"]["body"], &body);
            i += 1;
        }
    }
    failures
}
