//! Small builders and waits shared by the focused KubeDouble tests.

use std::time::{Duration, Instant};

use outpost_tests::KubeDouble;
use serde_json::{json, Value};

pub const APPLY: &str = "application/apply-patch+yaml";

pub fn namespace(double: &KubeDouble, name: &str) {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let (code, _) = double.request(
        "PATCH",
        &format!("/api/v1/namespaces/{name}?fieldManager=test&force=true"),
        Some(APPLY),
        Some(&body),
    );
    assert!(code == 201 || code == 200, "namespace {name}: {code}");
}

pub fn configmap(ns: &str, name: &str, data: Value, labels: Value) -> Value {
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data});
    // An applied `labels: {}` is owned as a field of its own; leave it out when there are none.
    if labels.as_object().is_some_and(|l| !l.is_empty()) {
        cm["metadata"]["labels"] = labels;
    }
    cm
}

pub fn apply(
    double: &KubeDouble,
    path: &str,
    manager: &str,
    force: bool,
    body: &Value,
) -> (u16, Value) {
    let force = if force { "&force=true" } else { "" };
    double.request(
        "PATCH",
        &format!("{path}?&fieldManager={manager}{force}"),
        Some(APPLY),
        Some(body),
    )
}

pub fn managed(obj: &Value, manager: &str) -> Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["manager"] == manager))
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

pub fn deployment(name: &str, app: &str, replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "w"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}})
}

pub fn wait_for(mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "condition not reached in 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn condition(obj: &Value, kind: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}
