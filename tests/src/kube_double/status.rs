//! Simulated controllers and defaulting: what kube-apiserver and kube-controller-manager add
//! to objects on their own.
//!
//! Controllers run as delayed actions in `State::pending`, executed by `tick` (called on every
//! request and by a timer on the server thread), so clients observe the same "wait until
//! Established / Available" sequence as against a real cluster, only faster. Their writes
//! go through the normal store (new resourceVersion, watch events) and appear in
//! managedFields as `Update` operations with subresource `status`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::apply;
use super::discovery::ResourceType;
use super::errors::{new_uid, now_rfc3339};
use super::objects::{Key, State};

/// A delayed controller action.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// Accept the names of CRD `.0` and start serving its resources.
    EstablishCrd(String),
    /// Bring a workload's status in line with its spec and `workloads_ready`.
    Workload(Key),
    /// Finish deleting a Terminating namespace and everything in it.
    FinishNamespace(String),
}

const KCM: &str = "kube-controller-manager";
const WORKLOADS: &[&str] = &["deployments", "statefulsets", "daemonsets", "jobs"];

pub(crate) fn schedule(state: &mut State, after: Duration, action: Action) {
    state.pending.push((Instant::now() + after, action));
}

/// Runs every pending action that is due.
pub(crate) fn tick(state: &mut State) {
    let now = Instant::now();
    let (due, later): (Vec<_>, Vec<_>) = state.pending.drain(..).partition(|(t, _)| *t <= now);
    state.pending = later;
    for (_, action) in due {
        match action {
            Action::EstablishCrd(name) => establish_crd(state, &name),
            Action::Workload(key) => workload(state, &key),
            Action::FinishNamespace(name) => finish_namespace(state, &name),
        }
    }
}

/// Applies `f` to a stored object as `manager` (an Update on `subresource`); a change gets a
/// new resourceVersion and an event, no change is a no-op.
pub(crate) fn controller_write(
    state: &mut State,
    key: &Key,
    manager: &str,
    subresource: Option<&str>,
    f: impl FnOnce(&mut Value),
) {
    let Some(old) = state.objects.get(key).cloned() else {
        return;
    };
    let mut new = old.clone();
    f(&mut new);
    if new == old {
        return;
    }
    let api_version = old["apiVersion"].as_str().unwrap_or("v1").to_string();
    apply::record_update(
        Some(&old),
        &mut new,
        manager,
        &api_version,
        subresource,
        &now_rfc3339(),
    );
    state.put(key.clone(), new);
}

/// Fields the real server fills in on every write of these kinds.
pub(crate) fn defaults(ty: &ResourceType, obj: &mut Value, created: bool) {
    match ty.kind.as_str() {
        "Namespace" => {
            let name = obj["metadata"]["name"].clone();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            if obj["status"]["phase"].is_null() {
                obj["status"]["phase"] = json!("Active");
            }
        }
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            let spec = &mut obj["spec"];
            if ty.kind != "DaemonSet" && ty.kind != "Job" && spec["replicas"].is_null() {
                spec["replicas"] = json!(1);
            }
            match ty.kind.as_str() {
                "Deployment" => {
                    default(
                        spec,
                        "strategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                    );
                    default(spec, "revisionHistoryLimit", json!(10));
                    default(spec, "progressDeadlineSeconds", json!(600));
                }
                "StatefulSet" => {
                    default(spec, "podManagementPolicy", json!("OrderedReady"));
                    default(
                        spec,
                        "updateStrategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                    );
                    default(spec, "revisionHistoryLimit", json!(10));
                }
                "DaemonSet" => {
                    default(
                        spec,
                        "updateStrategy",
                        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                    );
                    default(spec, "revisionHistoryLimit", json!(10));
                }
                "Job" => {
                    default(spec, "parallelism", json!(1));
                    default(spec, "completions", json!(1));
                    default(spec, "backoffLimit", json!(6));
                    default(spec, "completionMode", json!("NonIndexed"));
                    default(spec, "suspend", json!(false));
                }
                _ => {}
            }
            if spec["template"].is_object() {
                default(
                    &mut spec["template"]["metadata"],
                    "creationTimestamp",
                    Value::Null,
                );
                default_pod_spec(&mut spec["template"]["spec"], ty.kind == "Job");
            }
            if created || obj.get("status").is_none() {
                default(obj, "status", json!({}));
            }
        }
        "Service" => {
            let spec = &mut obj["spec"];
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            if spec["clusterIP"].is_null() && spec["type"] != "ExternalName" {
                let n = new_uid();
                let ip = format!(
                    "10.96.{}.{}",
                    u8::from_str_radix(&n[0..2], 16).unwrap_or(1),
                    u8::from_str_radix(&n[2..4], 16).unwrap_or(1).max(2)
                );
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
            default(obj, "status", json!({"loadBalancer": {}}));
        }
        "CustomResourceDefinition" => {
            default(&mut obj["spec"], "conversion", json!({"strategy": "None"}));
            if created {
                let stored: Vec<Value> = obj["spec"]["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| v["storage"] == true)
                    .map(|v| v["name"].clone())
                    .collect();
                obj["status"] = json!({
                    "conditions": null,
                    "acceptedNames": {"plural": "", "kind": ""},
                    "storedVersions": stored,
                });
            }
        }
        "PersistentVolumeClaim" => {
            default(&mut obj["spec"], "volumeMode", json!("Filesystem"));
            default(obj, "status", json!({"phase": "Pending"}));
        }
        _ => {}
    }
}

fn default(obj: &mut Value, key: &str, value: Value) {
    if obj.get(key).is_none() {
        obj[key] = value;
    }
}

fn default_pod_spec(spec: &mut Value, job: bool) {
    default(
        spec,
        "restartPolicy",
        json!(if job { "Never" } else { "Always" }),
    );
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    for c in spec["containers"].as_array_mut().into_iter().flatten() {
        default(c, "resources", json!({}));
        default(c, "terminationMessagePath", json!("/dev/termination-log"));
        default(c, "terminationMessagePolicy", json!("File"));
        let image = c["image"].as_str().unwrap_or("").to_string();
        let tag = image
            .rsplit('/')
            .next()
            .unwrap_or("")
            .split_once(':')
            .map(|(_, t)| t);
        let policy = if tag.is_none_or(|t| t == "latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        default(c, "imagePullPolicy", json!(policy));
    }
}

/// Controller reactions after a write through the API (not after controller writes).
pub(crate) fn after_write(
    state: &mut State,
    ty: &ResourceType,
    key: &Key,
    created: bool,
    spec_changed: bool,
) {
    if ty.kind == "Namespace" && created {
        create_root_ca(state, &key.name);
    }
    if ty.kind == "CustomResourceDefinition" {
        let established = state.custom.iter().any(|t| {
            state.objects.get(key).is_some_and(|crd| {
                crd["spec"]["group"] == t.group.as_str()
                    && crd["spec"]["names"]["plural"] == t.plural.as_str()
            })
        });
        if created || !established {
            let delay = state.opts.crd_delay;
            schedule(state, delay, Action::EstablishCrd(key.name.clone()));
        } else if spec_changed {
            establish_crd(state, &key.name);
        }
    }
    if ty.group.is_empty() && ty.plural == "persistentvolumeclaims" && created {
        let delay = state.opts.controller_delay;
        schedule(state, delay, Action::Workload(key.clone()));
    }
    if (ty.group == "apps" || ty.group == "batch")
        && WORKLOADS.contains(&ty.plural.as_str())
        && (created || spec_changed)
    {
        let delay = state.opts.controller_delay;
        schedule(state, delay, Action::Workload(key.clone()));
    }
}

/// Re-runs the workload controllers for every workload (after `set_workloads_ready`).
pub(crate) fn resync_workloads(state: &mut State) {
    let keys: Vec<Key> = state
        .objects
        .keys()
        .filter(|k| {
            (k.group == "apps" || k.group == "batch") && WORKLOADS.contains(&k.resource.as_str())
        })
        .cloned()
        .collect();
    for k in keys {
        workload(state, &k);
    }
}

pub(crate) fn create_system_namespace(state: &mut State, name: &str) {
    let mut ns = json!({
        "kind": "Namespace", "apiVersion": "v1",
        "metadata": {"name": name, "uid": new_uid(), "creationTimestamp": now_rfc3339()},
    });
    let ty = ResourceType {
        group: String::new(),
        version: "v1".into(),
        plural: "namespaces".into(),
        singular: "namespace".into(),
        kind: "Namespace".into(),
        namespaced: false,
        subresources: vec![],
        custom: false,
        schema: None,
    };
    defaults(&ty, &mut ns, true);
    state.put(Key::namespace_key(name), ns);
    create_root_ca(state, name);
}

/// kube-controller-manager's root-ca-cert-publisher puts `kube-root-ca.crt` in every namespace.
fn create_root_ca(state: &mut State, namespace: &str) {
    let key = Key {
        group: String::new(),
        resource: "configmaps".into(),
        namespace: namespace.to_string(),
        name: "kube-root-ca.crt".into(),
    };
    let mut cm = json!({
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {
            "name": "kube-root-ca.crt", "namespace": namespace, "uid": new_uid(),
            "creationTimestamp": now_rfc3339(),
            "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."},
        },
        "data": {"ca.crt": state.opts.root_ca.clone()},
    });
    apply::record_update(None, &mut cm, KCM, "v1", None, &now_rfc3339());
    state.put(key, cm);
}

fn establish_crd(state: &mut State, name: &str) {
    let key = Key {
        group: "apiextensions.k8s.io".into(),
        resource: "customresourcedefinitions".into(),
        namespace: String::new(),
        name: name.to_string(),
    };
    let Some(crd) = state.objects.get(&key).cloned() else {
        return;
    };
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = spec["names"].clone();
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    state
        .custom
        .retain(|t| !(t.group == group && t.plural == plural));
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"] == false {
            continue;
        }
        state.custom.push(ResourceType {
            group: group.clone(),
            version: v["name"].as_str().unwrap_or_default().to_string(),
            plural: plural.clone(),
            singular: names["singular"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| names["kind"].as_str().unwrap_or_default().to_lowercase()),
            kind: names["kind"].as_str().unwrap_or_default().to_string(),
            namespaced: spec["scope"] == "Namespaced",
            subresources: if v["subresources"]["status"].is_object() {
                vec!["status".into()]
            } else {
                vec![]
            },
            custom: true,
            schema: v["schema"].get("openAPIV3Schema").cloned(),
        });
    }
    let now = now_rfc3339();
    let mut accepted = names.clone();
    default(
        &mut accepted,
        "singular",
        json!(names["kind"].as_str().unwrap_or_default().to_lowercase()),
    );
    default(
        &mut accepted,
        "listKind",
        json!(format!(
            "{}List",
            names["kind"].as_str().unwrap_or_default()
        )),
    );
    controller_write(state, &key, "kube-apiserver", Some("status"), |crd| {
        let keep_time = |t: &str| {
            crd["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == t))
                .map(|c| c["lastTransitionTime"].clone())
                .unwrap_or(json!(now))
        };
        let conditions = json!([
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": keep_time("NamesAccepted"), "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": keep_time("Established"), "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ]);
        crd["status"]["conditions"] = conditions;
        crd["status"]["acceptedNames"] = accepted;
    });
}

fn condition(kind: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": kind, "status": if status { "True" } else { "False" },
        "lastUpdateTime": now, "lastTransitionTime": now, "reason": reason, "message": message,
    })
}

fn workload(state: &mut State, key: &Key) {
    let ready = state.opts.workloads_ready;
    let now = now_rfc3339();
    let resource = key.resource.clone();
    let name = key.name.clone();
    controller_write(state, key, KCM, Some("status"), |obj| {
        let generation = obj["metadata"]["generation"].clone();
        let n = obj["spec"]["replicas"].as_i64().unwrap_or(1);
        let mut status = obj["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        let map = status.as_object_mut().expect("object");
        // Keep conditions other writers added (e.g. via /status); replace the controller's.
        let own_types = [
            "Available",
            "Progressing",
            "Complete",
            "Failed",
            "SuccessCriteriaMet",
        ];
        let mut conditions: Vec<Value> = map
            .get("conditions")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter(|c| !own_types.iter().any(|t| c["type"] == *t))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for k in [
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "currentReplicas",
            "active",
            "succeeded",
        ] {
            map.remove(k);
        }
        match resource.as_str() {
            "deployments" => {
                map.insert("observedGeneration".into(), generation);
                map.insert("replicas".into(), json!(n));
                map.insert("updatedReplicas".into(), json!(n));
                let rs = format!("{name}-{}", &new_uid()[..10].replace('-', "0"));
                if ready || n == 0 {
                    map.insert("readyReplicas".into(), json!(n));
                    map.insert("availableReplicas".into(), json!(n));
                    conditions.push(condition(
                        "Available",
                        true,
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability.",
                        &now,
                    ));
                    conditions.push(condition(
                        "Progressing",
                        true,
                        "NewReplicaSetAvailable",
                        &format!("ReplicaSet \"{rs}\" has successfully progressed."),
                        &now,
                    ));
                } else {
                    map.insert("unavailableReplicas".into(), json!(n));
                    conditions.push(condition(
                        "Available",
                        false,
                        "MinimumReplicasUnavailable",
                        "Deployment does not have minimum availability.",
                        &now,
                    ));
                    conditions.push(condition(
                        "Progressing",
                        true,
                        "ReplicaSetUpdated",
                        &format!("ReplicaSet \"{rs}\" is progressing."),
                        &now,
                    ));
                }
                obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("1");
            }
            "statefulsets" => {
                map.insert("observedGeneration".into(), generation);
                map.insert("replicas".into(), json!(n));
                map.insert("currentReplicas".into(), json!(n));
                map.insert("updatedReplicas".into(), json!(n));
                if ready {
                    map.insert("readyReplicas".into(), json!(n));
                    map.insert("availableReplicas".into(), json!(n));
                }
                map.insert("collisionCount".into(), json!(0));
            }
            "daemonsets" => {
                let up = i64::from(ready);
                map.insert("observedGeneration".into(), generation);
                map.insert("currentNumberScheduled".into(), json!(1));
                map.insert("desiredNumberScheduled".into(), json!(1));
                map.insert("updatedNumberScheduled".into(), json!(1));
                map.insert("numberMisscheduled".into(), json!(0));
                map.insert("numberReady".into(), json!(up));
                map.insert("numberAvailable".into(), json!(up));
                if !ready {
                    map.insert("numberUnavailable".into(), json!(1));
                } else {
                    map.remove("numberUnavailable");
                }
            }
            "jobs" => {
                if !map.contains_key("startTime") {
                    map.insert("startTime".into(), json!(now));
                }
                if ready {
                    map.insert("succeeded".into(), json!(1));
                    map.insert("completionTime".into(), json!(now));
                    conditions.push(json!({"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": now, "lastTransitionTime": now, "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}));
                    conditions.push(json!({"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now, "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}));
                } else {
                    map.insert("active".into(), json!(1));
                    map.insert("ready".into(), json!(0));
                }
            }
            "persistentvolumeclaims" => {
                map.insert("phase".into(), json!("Bound"));
                let modes = obj["spec"]["accessModes"].clone();
                map.insert("accessModes".into(), modes);
                let storage = obj["spec"]["resources"]["requests"]["storage"].clone();
                map.insert("capacity".into(), json!({"storage": storage}));
            }
            _ => {}
        }
        if !conditions.is_empty() {
            map.insert("conditions".into(), Value::Array(conditions));
        }
        obj["status"] = status;
    });
}

/// DELETE of a namespace: Terminating now, gone (with its content) after a short delay.
pub(crate) fn start_namespace_deletion(state: &mut State, name: &str) -> Option<Value> {
    let key = Key::namespace_key(name);
    let mut ns = state.objects.get(&key)?.clone();
    if ns["metadata"]["deletionTimestamp"].is_null() {
        ns["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        ns["status"]["phase"] = json!("Terminating");
        ns = state.put(key, ns);
        let delay = state.opts.namespace_delete_delay;
        schedule(state, delay, Action::FinishNamespace(name.to_string()));
    }
    Some(ns)
}

fn finish_namespace(state: &mut State, name: &str) {
    let inside: Vec<Key> = state
        .objects
        .keys()
        .filter(|k| k.namespace == name)
        .cloned()
        .collect();
    for k in inside {
        state.remove(&k);
    }
    state.remove(&Key::namespace_key(name));
}
