//! When an applied object counts as healthy. Pure functions over the object as the server returns it, so the rules
//! (which follow what `kubectl rollout status` and Flux's kstatus check) are tested without a cluster.

use serde_json::Value;

use super::plan::ObjectRef;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet; the text says what is missing, for the timeout message.
    Pending(String),
    /// Will not become ready without a new revision (a failed Job, a rollout past its deadline).
    Failed(String),
}

/// True when the kind has a rule below: only these are read back after an apply.
pub fn needs_check(r: &ObjectRef, applied: &Value) -> bool {
    matches!(
        (r.group.as_str(), r.kind.as_str()),
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet")
            | ("batch", "Job")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("", "Namespace" | "PersistentVolumeClaim")
    ) || condition(applied, "Ready").is_some()
        || (!r.group.is_empty() && !r.group.ends_with(".k8s.io") && r.group.contains('.'))
}

pub fn readiness(r: &ObjectRef, o: &Value) -> Readiness {
    match (r.group.as_str(), r.kind.as_str()) {
        ("apps", "Deployment") => deployment(o),
        ("apps", "StatefulSet") => statefulset(o),
        ("apps", "DaemonSet") => daemonset(o),
        ("batch", "Job") => job(o),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => match condition(o, "Established") {
            Some(("True", _)) => Readiness::Ready,
            _ => Readiness::Pending("the CRD is not Established yet".into()),
        },
        ("", "Namespace") => phase(o, "Active"),
        ("", "PersistentVolumeClaim") => phase(o, "Bound"),
        _ => match condition(o, "Ready") {
            None | Some(("True", _)) => Readiness::Ready,
            Some((status, message)) => Readiness::Pending(format!(
                "condition Ready is {status}{}",
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            )),
        },
    }
}

fn int(o: &Value, pointer: &str) -> Option<i64> {
    o.pointer(pointer).and_then(Value::as_i64)
}

/// The status and message of a condition, if the object has it.
fn condition<'a>(o: &'a Value, kind: &str) -> Option<(&'a str, &'a str)> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .map(|c| {
            (
                c.get("status").and_then(Value::as_str).unwrap_or("Unknown"),
                c.get("message").and_then(Value::as_str).unwrap_or(""),
            )
        })
}

fn observed(o: &Value) -> Result<(), Readiness> {
    let generation = int(o, "/metadata/generation").unwrap_or(0);
    let seen = int(o, "/status/observedGeneration").unwrap_or(-1);
    if seen < generation {
        return Err(Readiness::Pending(format!(
            "the controller has not seen generation {generation} yet"
        )));
    }
    Ok(())
}

fn deployment(o: &Value) -> Readiness {
    if let Err(r) = observed(o) {
        return r;
    }
    if let Some(("False", message)) = condition(o, "Progressing") {
        return Readiness::Failed(format!("rollout failed: {message}"));
    }
    if o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
            })
        })
    {
        return Readiness::Failed("rollout exceeded its progress deadline".into());
    }
    let want = int(o, "/spec/replicas").unwrap_or(1);
    let updated = int(o, "/status/updatedReplicas").unwrap_or(0);
    let total = int(o, "/status/replicas").unwrap_or(0);
    let available = int(o, "/status/availableReplicas").unwrap_or(0);
    if updated < want {
        Readiness::Pending(format!("{updated} of {want} replicas updated"))
    } else if total > updated {
        Readiness::Pending(format!(
            "{} old replicas are pending termination",
            total - updated
        ))
    } else if available < want {
        Readiness::Pending(format!("{available} of {want} replicas available"))
    } else {
        Readiness::Ready
    }
}

fn statefulset(o: &Value) -> Readiness {
    if let Err(r) = observed(o) {
        return r;
    }
    let want = int(o, "/spec/replicas").unwrap_or(1);
    let ready = int(o, "/status/readyReplicas").unwrap_or(0);
    let updated = int(o, "/status/updatedReplicas").unwrap_or(0);
    let rolling = o
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        .is_none_or(|t| t == "RollingUpdate");
    if ready < want {
        Readiness::Pending(format!("{ready} of {want} replicas ready"))
    } else if rolling && updated < want {
        Readiness::Pending(format!("{updated} of {want} replicas updated"))
    } else {
        Readiness::Ready
    }
}

fn daemonset(o: &Value) -> Readiness {
    if let Err(r) = observed(o) {
        return r;
    }
    let desired = int(o, "/status/desiredNumberScheduled").unwrap_or(0);
    let updated = int(o, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int(o, "/status/numberAvailable").unwrap_or(0);
    if updated < desired {
        Readiness::Pending(format!("{updated} of {desired} pods updated"))
    } else if available < desired {
        Readiness::Pending(format!("{available} of {desired} pods available"))
    } else {
        Readiness::Ready
    }
}

fn job(o: &Value) -> Readiness {
    if let Some(("True", message)) = condition(o, "Failed") {
        return Readiness::Failed(format!("the job failed: {message}"));
    }
    match condition(o, "Complete") {
        Some(("True", _)) => Readiness::Ready,
        _ => Readiness::Pending("the job has not completed".into()),
    }
}

fn phase(o: &Value, want: &str) -> Readiness {
    match o.pointer("/status/phase").and_then(Value::as_str) {
        Some(p) if p == want => Readiness::Ready,
        Some(p) => Readiness::Pending(format!("phase is {p}, waiting for {want}")),
        None => Readiness::Pending(format!("no phase yet, waiting for {want}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(group: &str, kind: &str) -> ObjectRef {
        ObjectRef {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: None,
            name: "x".into(),
        }
    }

    #[test]
    fn deployment_waits_for_the_new_generation_and_available_replicas() {
        let d = r("apps", "Deployment");
        // As recorded from a real cluster without nodes: the pod stays Pending.
        let pending = json!({"metadata": {"generation": 1}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1,
                       "conditions": [{"type": "Available", "status": "False"},
                                      {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}});
        assert_eq!(
            readiness(&d, &pending),
            Readiness::Pending("0 of 1 replicas available".into())
        );
        let stale = json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 1}});
        assert!(
            matches!(readiness(&d, &stale), Readiness::Pending(m) if m.contains("generation 2"))
        );
        let ready = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        assert_eq!(readiness(&d, &ready), Readiness::Ready);
        let deadline = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet web-1 has timed out progressing."}]}});
        assert!(
            matches!(readiness(&d, &deadline), Readiness::Failed(m) if m.contains("timed out"))
        );
    }

    #[test]
    fn jobs_crds_namespaces_and_pvcs() {
        let done = json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(readiness(&r("batch", "Job"), &done), Readiness::Ready);
        let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}});
        assert!(matches!(
            readiness(&r("batch", "Job"), &failed),
            Readiness::Failed(_)
        ));
        let crd = r("apiextensions.k8s.io", "CustomResourceDefinition");
        let est = json!({"status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert_eq!(readiness(&crd, &est), Readiness::Ready);
        assert!(matches!(readiness(&crd, &json!({})), Readiness::Pending(_)));
        let ns = json!({"status": {"phase": "Terminating"}});
        assert!(
            matches!(readiness(&r("", "Namespace"), &ns), Readiness::Pending(m) if m.contains("Terminating"))
        );
        let pvc = json!({"status": {"phase": "Bound"}});
        assert_eq!(
            readiness(&r("", "PersistentVolumeClaim"), &pvc),
            Readiness::Ready
        );
    }

    #[test]
    fn anything_with_a_ready_condition_needs_it_true() {
        let w = r("example.com", "Widget");
        let not = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "message": "no quota"}]}});
        assert_eq!(
            readiness(&w, &not),
            Readiness::Pending("condition Ready is False: no quota".into())
        );
        assert_eq!(readiness(&r("", "ConfigMap"), &json!({})), Readiness::Ready);
        assert!(!needs_check(&r("", "ConfigMap"), &json!({})));
        assert!(needs_check(&r("apps", "Deployment"), &json!({})));
    }
}
