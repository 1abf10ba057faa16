//! What to do with a bundle, decided without the network: object identities, the two apply stages and the kind
//! order inside them, the prune set and its order. Everything here is a plain function so that the ordering rules,
//! which decide whether a fresh cluster converges in one pass, are unit-tested.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The identity of one object in the cluster. The version is how we address it, not part of who it is: the same
/// Deployment read as `apps/v1` or a future `apps/v2` is one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub group: String,
    pub version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// The version-independent key used to match bundle objects, inventory entries and list results.
    pub fn key(&self) -> (String, String, String, String) {
        (
            self.group.clone(),
            self.kind.clone(),
            self.namespace.clone().unwrap_or_default(),
            self.name.clone(),
        )
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// Splits `apiVersion` into group and version (`v1` is the core group).
pub fn split_api_version(api_version: &str) -> (String, String) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.to_string()),
    }
}

/// The identity of a bundle object as written (namespace not yet defaulted). Build guarantees apiVersion, kind and
/// name exist; this still refuses rather than panics.
pub fn object_ref(object: &Value) -> Option<ObjectRef> {
    let (group, version) = split_api_version(object.get("apiVersion")?.as_str()?);
    Some(ObjectRef {
        group,
        version,
        kind: object.get("kind")?.as_str()?.to_string(),
        namespace: object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        name: object.pointer("/metadata/name")?.as_str()?.to_string(),
    })
}

/// Stage 1 holds what other objects need to exist before the server accepts them.
pub fn is_stage_one(r: &ObjectRef) -> bool {
    is_crd(r) || is_namespace(r)
}

pub fn is_crd(r: &ObjectRef) -> bool {
    r.group == "apiextensions.k8s.io" && r.kind == "CustomResourceDefinition"
}

pub fn is_namespace(r: &ObjectRef) -> bool {
    r.group.is_empty() && r.kind == "Namespace"
}

/// The apply rank of a kind: what others refer to comes first (identities and permissions, then configuration,
/// then storage, then workloads), and admission webhooks come last so that they cannot block the rest of the
/// bundle. Kinds we do not know (custom resources) go after the built-in workloads.
pub fn kind_rank(kind: &str) -> u32 {
    const ORDER: &[&str] = &[
        "Namespace",
        "CustomResourceDefinition",
        "ResourceQuota",
        "LimitRange",
        "PriorityClass",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Secret",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "Service",
        "PodDisruptionBudget",
        "DaemonSet",
        "Pod",
        "ReplicaSet",
        "Deployment",
        "StatefulSet",
        "HorizontalPodAutoscaler",
        "Job",
        "CronJob",
        "IngressClass",
        "Ingress",
        "NetworkPolicy",
        "APIService",
    ];
    const WEBHOOKS: &[&str] = &[
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ];
    if let Some(i) = ORDER.iter().position(|k| *k == kind) {
        i as u32
    } else if let Some(i) = WEBHOOKS.iter().position(|k| *k == kind) {
        1000 + i as u32
    } else {
        500
    }
}

/// The apply order of an object: by kind rank, then by identity, so the same bundle always applies the same way.
pub fn apply_order(r: &ObjectRef) -> (u32, (String, String, String, String)) {
    (kind_rank(&r.kind), r.key())
}

pub fn sort_for_apply(refs: &mut [ObjectRef]) {
    refs.sort_by_key(apply_order);
}

/// Groups already sorted objects into waves of equal rank; a wave is applied concurrently, waves in order.
pub fn waves<T>(items: Vec<T>, kind: impl Fn(&T) -> &str) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut last = None;
    for item in items {
        let rank = kind_rank(kind(&item));
        if last == Some(rank) {
            if let Some(w) = out.last_mut() {
                w.push(item);
                continue;
            }
        }
        last = Some(rank);
        out.push(vec![item]);
    }
    out
}

/// Deletion order: the reverse of apply order, with Namespaces and CRDs at the very end, because deleting either
/// takes everything inside it along.
pub fn sort_for_delete(refs: &mut [ObjectRef]) {
    refs.sort_by(|a, b| {
        let ka = (
            is_stage_one(a),
            std::cmp::Reverse(kind_rank(&a.kind)),
            a.key(),
        );
        let kb = (
            is_stage_one(b),
            std::cmp::Reverse(kind_rank(&b.kind)),
            b.key(),
        );
        ka.cmp(&kb)
    });
}

/// Objects in `previous` but not in `desired`, matched by identity (not version).
pub fn removed<'a>(
    previous: impl IntoIterator<Item = &'a ObjectRef>,
    desired: &[ObjectRef],
) -> Vec<ObjectRef> {
    let keep: BTreeSet<_> = desired.iter().map(ObjectRef::key).collect();
    let mut out: Vec<ObjectRef> = previous
        .into_iter()
        .filter(|r| !keep.contains(&r.key()))
        .cloned()
        .collect();
    sort_for_delete(&mut out);
    out.dedup();
    out
}

/// What `outpost.dev/apply` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Apply,
    IfNotPresent,
    Ignore,
}

/// An `outpost.dev/apply` value that is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}: {0:?} is not a policy; use \"if-not-present\" or \"ignore\", or remove it", annotation = super::super::APPLY_ANNOTATION)]
pub struct UnknownPolicy(pub String);

pub fn policy(object: &Value) -> Result<Policy, UnknownPolicy> {
    match super::super::apply_policy(object) {
        None => Ok(Policy::Apply),
        Some("if-not-present") => Ok(Policy::IfNotPresent),
        Some("ignore") => Ok(Policy::Ignore),
        Some(other) => Err(UnknownPolicy(other.to_string())),
    }
}

/// True when the object must never be deleted by prune.
pub fn prune_disabled(annotations: Option<&serde_json::Map<String, Value>>) -> bool {
    annotations
        .and_then(|a| a.get(super::PRUNE_ANNOTATION))
        .and_then(Value::as_str)
        == Some("disabled")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(kind: &str, name: &str) -> ObjectRef {
        let group = match kind {
            "CustomResourceDefinition" => "apiextensions.k8s.io",
            "Deployment" => "apps",
            "Widget" => "example.com",
            "ValidatingWebhookConfiguration" => "admissionregistration.k8s.io",
            "Role" => "rbac.authorization.k8s.io",
            _ => "",
        };
        ObjectRef {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }

    #[test]
    fn apply_order_puts_dependencies_first_and_webhooks_last() {
        let mut refs = vec![
            r("ValidatingWebhookConfiguration", "hook"),
            r("Deployment", "web"),
            r("Widget", "w"),
            r("ConfigMap", "b"),
            r("ConfigMap", "a"),
            r("Role", "reader"),
            r("ServiceAccount", "sa"),
            r("Secret", "s"),
        ];
        sort_for_apply(&mut refs);
        let kinds: Vec<String> = refs.iter().map(|r| format!("{r}")).collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount/sa",
                "Role/reader",
                "Secret/s",
                "ConfigMap/a",
                "ConfigMap/b",
                "Deployment/web",
                "Widget/w",
                "ValidatingWebhookConfiguration/hook"
            ]
        );
        let w = waves(refs, |r| &r.kind);
        assert_eq!(w.len(), 7, "the two ConfigMaps share a wave");
        assert_eq!(w[3].len(), 2);
    }

    #[test]
    fn delete_order_ends_with_namespaces_and_crds() {
        let mut refs = vec![
            r("Namespace", "ns"),
            r("CustomResourceDefinition", "widgets.example.com"),
            r("ConfigMap", "c"),
            r("Deployment", "web"),
            r("ServiceAccount", "sa"),
        ];
        sort_for_delete(&mut refs);
        let names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["web", "c", "sa", "widgets.example.com", "ns"],
            "workloads before what they use; CRDs and namespaces last"
        );
    }

    #[test]
    fn removed_matches_by_identity_not_version() {
        let mut old = r("Deployment", "web");
        old.version = "v1beta1".into();
        let gone = r("ConfigMap", "gone");
        let desired = vec![r("Deployment", "web")];
        let out = removed([&old, &gone], &desired);
        assert_eq!(out, vec![gone]);
    }

    #[test]
    fn object_ref_reads_group_version_and_namespace() {
        let o = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web", "namespace": "shop"}});
        let r = object_ref(&o).unwrap();
        assert_eq!((r.group.as_str(), r.version.as_str()), ("apps", "v1"));
        assert_eq!(r.to_string(), "Deployment/shop/web");
        let core = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let r = object_ref(&core).unwrap();
        assert_eq!(r.group, "");
        assert_eq!(r.api_version(), "v1");
        assert_eq!(r.namespace, None);
    }

    #[test]
    fn policies_are_read_and_typos_refused() {
        let o = |v: &str| json!({"metadata": {"annotations": {"outpost.dev/apply": v}}});
        assert_eq!(policy(&o("ignore")), Ok(Policy::Ignore));
        assert_eq!(policy(&o("if-not-present")), Ok(Policy::IfNotPresent));
        assert_eq!(policy(&json!({"metadata": {}})), Ok(Policy::Apply));
        let err = policy(&o("IfNotPresent")).unwrap_err();
        assert!(err.to_string().contains("if-not-present"), "{err}");
    }
}
