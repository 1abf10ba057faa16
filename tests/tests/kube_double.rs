//! The Kubernetes API double against the recorded kube-apiserver v1.32.6 transcripts, plus
//! focused tests of the behaviours the agent relies on (server-side apply ownership,
//! pagination, metadata-only lists, CRDs, namespace deletion, leases, outages, auth, kubectl).

#[path = "kube_double/replay.rs"]
mod replay;
#[path = "kube_double/support.rs"]
mod support;

use std::time::Duration;

use outpost_tests::KubeDouble;
use replay::{compare, compare_json, load, replay_all, send, Lists, Mapping};
use serde_json::{json, Value};
use support::*;

#[test]
fn replays_every_transcript_in_recording_order() {
    // The recording cluster had no nodes, so Deployments never became available.
    let double = KubeDouble::builder().workloads_ready(false).start();
    let failures = replay_all(&double);
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_comparison_rejects_a_different_answer() {
    let double = KubeDouble::start();
    let ex = &load("ssa-configmap-missing-namespace")[0];
    let got = send(&double, ex, Some(&double.token()), &Mapping::default());
    compare(&ex["response"], &got, Lists::Names).expect("the real answer matches");
    let mut wrong = ex["response"].clone();
    wrong["body"]["details"]["kind"] = json!("configmaps");
    assert!(compare(&wrong, &got, Lists::Names).is_err());
    wrong = ex["response"].clone();
    wrong["status"] = json!(409);
    assert!(compare(&wrong, &got, Lists::Names).is_err());
    let list = json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {}, "items": [{"metadata": {"name": "a"}}]});
    let other = json!({"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {}, "items": []});
    assert!(compare_json(&list, &other, Lists::Names).is_err());
}

#[test]
fn conflicts_force_and_removal_of_dropped_fields() {
    let double = KubeDouble::start();
    namespace(&double, "t");
    let path = "/api/v1/namespaces/t/configmaps/shared";
    let (code, _) = double.request(
        "POST",
        "/api/v1/namespaces/t/configmaps?fieldManager=other",
        Some("application/json"),
        Some(&configmap(
            "t",
            "shared",
            json!({"a": "1", "b": "2"}),
            json!({}),
        )),
    );
    assert_eq!(code, 201);
    let mine = configmap("t", "shared", json!({"a": "mine"}), json!({}));
    let (code, status) = apply(&double, path, "outpost", false, &mine);
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldManagerConflict"
    );
    assert_eq!(status["details"]["causes"][0]["field"], ".data.a");
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"other\" using v1: .data.a"
    );
    // The same value as the live one is shared ownership, not a conflict.
    let same = configmap("t", "shared", json!({"b": "2"}), json!({}));
    assert_eq!(apply(&double, path, "third", false, &same).0, 200);

    let (code, obj) = apply(&double, path, "outpost", true, &mine);
    assert_eq!(code, 200);
    assert_eq!(obj["data"], json!({"a": "mine", "b": "2"}));
    assert_eq!(managed(&obj, "outpost"), json!({"f:data": {"f:a": {}}}));
    assert_eq!(
        managed(&obj, "other"),
        json!({"f:data": {".": {}, "f:b": {}}})
    );

    // Dropping "a" (only outpost owns it now) removes it; "b" stays with its owners.
    let (_, obj) = apply(
        &double,
        path,
        "outpost",
        false,
        &configmap("t", "shared", json!({"c": "3"}), json!({})),
    );
    assert_eq!(obj["data"], json!({"b": "2", "c": "3"}));
}

#[test]
fn an_unchanged_apply_is_a_no_op() {
    let double = KubeDouble::start();
    namespace(&double, "t");
    let path = "/api/v1/namespaces/t/configmaps/c";
    let cm = configmap("t", "c", json!({"k": "v"}), json!({"app": "x"}));
    let (code, first) = apply(&double, path, "outpost", true, &cm);
    assert_eq!(code, 201);
    std::thread::sleep(Duration::from_millis(1100));
    let (code, second) = apply(&double, path, "outpost", true, &cm);
    assert_eq!(code, 200);
    assert_eq!(
        first["metadata"]["resourceVersion"],
        second["metadata"]["resourceVersion"]
    );
    assert_eq!(
        first["metadata"]["managedFields"],
        second["metadata"]["managedFields"]
    );
    assert!(
        first["metadata"].get("generation").is_none(),
        "ConfigMaps have no generation"
    );
    let (_, third) = apply(
        &double,
        path,
        "outpost",
        true,
        &configmap("t", "c", json!({"k": "w"}), json!({"app": "x"})),
    );
    assert_ne!(
        first["metadata"]["resourceVersion"],
        third["metadata"]["resourceVersion"]
    );
}

#[test]
fn metadata_only_lists_and_pagination() {
    let double = KubeDouble::start();
    namespace(&double, "p");
    for (name, tier) in [
        ("a", "web"),
        ("b", "db"),
        ("c", "web"),
        ("d", "cache"),
        ("e", "web"),
    ] {
        let cm = configmap(
            "p",
            name,
            json!({"k": name}),
            json!({"owner": "outpost", "tier": tier}),
        );
        assert_eq!(
            apply(
                &double,
                &format!("/api/v1/namespaces/p/configmaps/{name}"),
                "outpost",
                true,
                &cm
            )
            .0,
            201
        );
    }
    let r = double.send(
        "GET",
        "/api/v1/namespaces/p/configmaps?labelSelector=owner%3Doutpost",
        Some(&double.token()),
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
        None,
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    let list = r.json();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
    let item = &list["items"][0];
    assert_eq!(item["kind"], "PartialObjectMetadata");
    assert!(item.get("data").is_none());
    assert!(item["metadata"]["managedFields"].is_array());
    assert_eq!(item["metadata"]["labels"]["tier"], "web");

    let mut names = Vec::new();
    let mut cont = String::new();
    loop {
        let (code, page) = double.request("GET", &format!("/api/v1/namespaces/p/configmaps?labelSelector=owner%3Doutpost&limit=2&continue={cont}"), None, None);
        assert_eq!(code, 200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        names.extend(
            items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(c) => cont = c.to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["a", "b", "c", "d", "e"]);

    let select = |sel: &str| -> Vec<String> {
        let (code, list) = double.request(
            "GET",
            &format!("/api/v1/configmaps?labelSelector={sel}"),
            None,
            None,
        );
        assert_eq!(code, 200, "{sel}");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(select("tier%20in%20(db,cache)"), ["b", "d"]);
    assert_eq!(select("owner,tier%20notin%20(web)"), ["b", "d"]);
    assert_eq!(select("tier!%3Dweb,owner%3Doutpost"), ["b", "d"]);
    assert_eq!(select("!nothing,tier%3D%3Dweb"), ["a", "c", "e"]);
}

#[test]
fn workloads_status_generation_and_immutable_selector() {
    let double = KubeDouble::start();
    namespace(&double, "w");
    let path = "/apis/apps/v1/namespaces/w/deployments/web";
    let (code, created) = apply(&double, path, "outpost", true, &deployment("web", "web", 2));
    assert_eq!(code, 201);
    assert_eq!(created["metadata"]["generation"], 1);
    wait_for(|| {
        double
            .get(path)
            .is_some_and(|d| condition(&d, "Available") == "True")
    });
    let d = double.get(path).unwrap();
    assert_eq!(d["status"]["readyReplicas"], 2);
    assert_eq!(d["status"]["observedGeneration"], 1);
    assert_eq!(
        d["metadata"]["generation"], 1,
        "status writes do not bump generation"
    );
    let kcm = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kube-controller-manager")
        .cloned()
        .unwrap();
    assert_eq!(kcm["subresource"], "status");
    assert_eq!(kcm["operation"], "Update");

    double.set_workloads_ready(false);
    let d = double.get(path).unwrap();
    assert_eq!(condition(&d, "Available"), "False");
    assert_eq!(d["status"]["unavailableReplicas"], 2);

    let (_, scaled) = apply(&double, path, "outpost", true, &deployment("web", "web", 3));
    assert_eq!(scaled["metadata"]["generation"], 2);

    let (code, status) = apply(
        &double,
        path,
        "outpost",
        true,
        &deployment("web", "other", 3),
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["kind"], "Deployment");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.selector");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("field is immutable"),
        "{status}"
    );
}

#[test]
fn crd_becomes_established_then_serves_custom_resources() {
    let double = KubeDouble::builder()
        .crd_delay(Duration::from_millis(300))
        .start();
    namespace(&double, "demo");
    let crd = load("crd-lifecycle")[0]["request"]["body"].clone();
    let (code, _) = apply(
        &double,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        "outpost",
        true,
        &crd,
    );
    assert_eq!(code, 201);
    let (code, text) = double.request("GET", "/apis/example.com/v1", None, None);
    assert_eq!(
        (code, text),
        (404, json!("404 page not found\n")),
        "not served before Established"
    );
    wait_for(|| double.request("GET", "/apis/example.com/v1", None, None).0 == 200);
    let crd = double
        .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
        .unwrap();
    assert_eq!(condition(&crd, "Established"), "True");
    let agg = double.send(
        "GET",
        "/apis",
        Some(&double.token()),
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        None,
        None,
    );
    assert!(agg.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["metadata"]["name"] == "example.com"));
    let widget = |name: &str, spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "namespace": "demo"}, "spec": spec});
    let w = "/apis/example.com/v1/namespaces/demo/widgets";
    assert_eq!(
        apply(
            &double,
            &format!("{w}/ok"),
            "outpost",
            true,
            &widget("ok", json!({"size": 1}))
        )
        .0,
        201
    );
    assert_eq!(
        apply(
            &double,
            &format!("{w}/bad"),
            "outpost",
            true,
            &widget("bad", json!({"size": "x"}))
        )
        .0,
        500
    );
    assert_eq!(
        apply(
            &double,
            &format!("{w}/neg"),
            "outpost",
            true,
            &widget("neg", json!({"size": -1}))
        )
        .0,
        422
    );
    let (code, list) = double.request("GET", "/apis/example.com/v1/widgets", None, None);
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "WidgetList");
    assert_eq!(list["items"][0]["kind"], "Widget");
}

#[test]
fn deleting_a_namespace_removes_its_content() {
    let double = KubeDouble::start();
    namespace(&double, "doomed");
    apply(
        &double,
        "/api/v1/namespaces/doomed/configmaps/x",
        "outpost",
        true,
        &configmap("doomed", "x", json!({}), json!({})),
    );
    let (code, ns) = double.request(
        "DELETE",
        "/api/v1/namespaces/doomed",
        Some("application/json"),
        Some(&json!({"propagationPolicy": "Background"})),
    );
    assert_eq!(code, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    wait_for(|| double.get("/api/v1/namespaces/doomed").is_none());
    assert!(double
        .get("/api/v1/namespaces/doomed/configmaps/x")
        .is_none());
    let (code, status) =
        double.request("GET", "/api/v1/namespaces/doomed/configmaps/x", None, None);
    assert_eq!(
        (code, status["details"]["kind"].clone()),
        (404, json!("configmaps"))
    );
}

#[test]
fn lease_create_renew_and_stale_update() {
    let double = KubeDouble::start();
    namespace(&double, "l");
    let base = "/apis/coordination.k8s.io/v1/namespaces/l/leases";
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
    let (code, created) = double.request("POST", base, Some("application/json"), Some(&lease));
    assert_eq!(code, 201);
    assert_eq!(
        double
            .request("POST", base, Some("application/json"), Some(&lease))
            .0,
        409
    );
    let mut renew = created.clone();
    renew["spec"]["renewTime"] = json!("2026-01-01T00:00:00.000000Z");
    let (code, renewed) = double.request(
        "PUT",
        &format!("{base}/leader"),
        Some("application/json"),
        Some(&renew),
    );
    assert_eq!(code, 200);
    assert_ne!(
        renewed["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    let mut takeover = created.clone();
    takeover["spec"]["holderIdentity"] = json!("b");
    let (code, status) = double.request(
        "PUT",
        &format!("{base}/leader"),
        Some("application/json"),
        Some(&takeover),
    );
    assert_eq!((code, status["reason"].clone()), (409, json!("Conflict")));
}

#[test]
fn stop_and_start_again_keep_the_port_and_the_objects() {
    let mut double = KubeDouble::start();
    namespace(&double, "keep");
    let port = double.port();
    double.stop();
    assert!(!double.is_running());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port must refuse connections"
    );
    double.start_again();
    assert!(double.is_running());
    let (code, ns) = double.request("GET", "/api/v1/namespaces/keep", None, None);
    assert_eq!((code, ns["metadata"]["name"].clone()), (200, json!("keep")));
    assert_eq!(double.port(), port);
}

#[test]
fn restricted_tokens_and_forbidden_resources() {
    let double = KubeDouble::start();
    let token = double.restricted_token();
    let get = |path: &str, token: Option<&str>| {
        double.send("GET", path, token, "application/json", None, None)
    };
    assert_eq!(get("/version", Some(&token)).status, 200);
    assert_eq!(get("/api/v1", Some(&token)).status, 200);
    let denied = get("/api/v1/namespaces/default/configmaps", Some(&token));
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.json()["message"],
        "configmaps is forbidden: User \"system:serviceaccount:default:restricted\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    assert_eq!(get("/api/v1/namespaces", None).status, 401);
    assert_eq!(
        get("/api/v1/namespaces", Some("nope")).json()["reason"],
        "Unauthorized"
    );
    double.forbid("secrets");
    assert_eq!(
        get("/api/v1/namespaces/default/secrets", Some(&double.token())).status,
        403
    );
    double.allow("secrets");
    assert_eq!(
        get("/api/v1/namespaces/default/secrets", Some(&double.token())).status,
        200
    );
}

#[test]
fn the_request_log_counts_what_clients_did() {
    let double = KubeDouble::start();
    namespace(&double, "r");
    double.reset_requests();
    for i in 0..3 {
        apply(
            &double,
            &format!("/api/v1/namespaces/r/configmaps/c{i}"),
            "outpost",
            true,
            &configmap("r", &format!("c{i}"), json!({}), json!({})),
        );
    }
    double.request("GET", "/api/v1/namespaces/r/configmaps", None, None);
    let log = double.requests();
    assert_eq!(
        log.iter()
            .filter(|r| r.method == "PATCH" && r.content_type == APPLY)
            .count(),
        3
    );
    assert_eq!(log.iter().filter(|r| r.method == "GET").count(), 1);
    assert_eq!(
        log[0].path,
        "/api/v1/namespaces/r/configmaps/c0?&fieldManager=outpost&force=true"
    );
    assert_eq!(log[0].status, 201);
}

#[test]
fn kubectl_server_side_apply_against_the_double() {
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        println!("skipped: kubectl is not installed");
        return;
    }
    let double = KubeDouble::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = double.write_kubeconfig(dir.path());
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(
        manifests.join("00-ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kc\n",
    )
    .unwrap();
    for name in ["one", "two"] {
        std::fs::write(manifests.join(format!("cm-{name}.yaml")), format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: kc\ndata:\n  k: {name}\n")).unwrap();
    }
    std::fs::write(
        manifests.join("deploy.yaml"),
        serde_json::to_string(&{
            let mut d = deployment("web", "web", 1);
            d["metadata"]["namespace"] = json!("kc");
            d
        })
        .unwrap(),
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .env("HOME", dir.path())
            .output()
            .expect("run kubectl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubectl {args:?} failed:\n{text}");
        text
    };
    let applied = kubectl(&["apply", "--server-side", "-f", manifests.to_str().unwrap()]);
    assert!(applied.contains("serverside-applied"), "{applied}");
    let listed = kubectl(&["get", "configmaps", "-n", "kc"]);
    assert!(listed.contains("one") && listed.contains("two"), "{listed}");
    assert!(double
        .get("/apis/apps/v1/namespaces/kc/deployments/web")
        .is_some());
    let cm = double.get("/api/v1/namespaces/kc/configmaps/one").unwrap();
    assert_eq!(managed(&cm, "kubectl"), json!({"f:data": {"f:k": {}}}));
}
