//! kustomize's default ("legacy") output order: kinds that others depend on first (namespaces, CRDs, RBAC,
//! config), workloads after them, webhooks last; within a kind by group/version, namespace and name. The top
//! kustomization's `sortOptions` can ask for `fifo` (the order resources were listed and generated) or a legacy
//! order with its own first and last kinds.

use serde_json::Value;

use super::load::Kustomization;
use super::Result;

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

/// Sorts as the top kustomization's `sortOptions` say (legacy by default).
pub fn sort(top: &Kustomization, objects: Vec<Value>) -> Result<Vec<Value>> {
    let Some(options) = &top.spec.sort_options else {
        return Ok(legacy(objects));
    };
    match options.order.as_deref() {
        Some("fifo") if options.legacy_sort_options.is_some() => Err(top.invalid(
            "sortOptions.legacySortOptions is set but sortOptions.order is fifo; remove legacySortOptions, or set order: legacy".into(),
        )),
        Some("fifo") => Ok(objects),
        Some("legacy") => Ok(match &options.legacy_sort_options {
            Some(custom) => by_rank(objects, &custom.order_first, &custom.order_last),
            None => legacy(objects),
        }),
        other => Err(top.invalid(format!(
            "sortOptions.order is {}; it must be one of fifo, legacy",
            other
                .map(|o| format!("{o:?}"))
                .unwrap_or_else(|| "missing".into())
        ))),
    }
}

fn rank<S: AsRef<str>>(kind: &str, first: &[S], last: &[S]) -> i64 {
    if let Some(i) = first.iter().position(|k| k.as_ref() == kind) {
        return i as i64 - first.len() as i64;
    }
    if let Some(i) = last.iter().position(|k| k.as_ref() == kind) {
        return i as i64 + 1;
    }
    0
}

fn text<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Sorts objects stably; the key is total, so the bundle (and its digest) is deterministic.
pub fn legacy(objects: Vec<Value>) -> Vec<Value> {
    by_rank(objects, FIRST, LAST)
}

fn by_rank<S: AsRef<str>>(mut objects: Vec<Value>, first: &[S], last: &[S]) -> Vec<Value> {
    objects.sort_by_cached_key(|o| {
        let kind = text(o, "/kind").to_string();
        let api = text(o, "/apiVersion");
        let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
        (
            rank(&kind, first, last),
            format!(
                "{}_{version}_{kind}",
                if group.is_empty() { "~G" } else { group }
            ),
            // Measured with kubectl: objects without a namespace come after those with one.
            match text(o, "/metadata/namespace") {
                "" => "~X".to_string(),
                ns => ns.to_string(),
            },
            text(o, "/metadata/name").to_string(),
        )
    });
    objects
}
