//! kustomize's default ("legacy") output order: kinds that others depend on first (namespaces, CRDs, RBAC,
//! config), workloads after them, webhooks last; within a kind by group/version, namespace and name.

use serde_json::Value;

const FIRST: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn rank(kind: &str) -> i64 {
    if let Some(i) = FIRST.iter().position(|k| *k == kind) {
        return i as i64 - FIRST.len() as i64;
    }
    if let Some(i) = LAST.iter().position(|k| *k == kind) {
        return i as i64 + 1;
    }
    0
}

fn text<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Sorts objects stably; the key is total, so the bundle (and its digest) is deterministic.
pub fn legacy(mut objects: Vec<Value>) -> Vec<Value> {
    objects.sort_by_cached_key(|o| {
        let kind = text(o, "/kind").to_string();
        let api = text(o, "/apiVersion");
        let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
        (
            rank(&kind),
            format!(
                "{}_{version}_{kind}",
                if group.is_empty() { "~G" } else { group }
            ),
            text(o, "/metadata/namespace").to_string(),
            text(o, "/metadata/name").to_string(),
        )
    });
    objects
}
