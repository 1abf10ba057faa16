//! The built-in transformers, run in kustomize's fixed order over everything a kustomization accumulated:
//! patchesStrategicMerge, patches, namespace, namePrefix, nameSuffix, labels, annotations, patchesJson6902,
//! replicas, images.
//!
//! Which fields each one touches follows kustomize's default field specs (e.g. commonLabels reach a
//! Deployment's selector and pod template, but only the metadata of a ConfigMap).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::files::RepoFiles;
use super::load::Kustomization;
use super::{patches, Res, Result};

pub fn run(files: &RepoFiles, k: &Kustomization, acc: &mut [Res]) -> Result<()> {
    patches::strategic_merge(files, k, acc)?;
    patches::patches(files, k, acc)?;
    if let Some(ns) = k.spec.namespace.as_deref().filter(|n| !n.is_empty()) {
        namespace(acc, ns);
    }
    prefix_suffix(
        acc,
        k.spec.name_prefix.as_deref().unwrap_or(""),
        k.spec.name_suffix.as_deref().unwrap_or(""),
    );
    if !k.spec.common_labels.is_empty() {
        labels(acc, &k.spec.common_labels, Reach::Selectors);
    }
    for set in &k.spec.labels {
        let reach = if set.include_selectors {
            Reach::Selectors
        } else if set.include_templates {
            Reach::Templates
        } else {
            Reach::Metadata
        };
        labels(acc, &set.pairs, reach);
    }
    if !k.spec.common_annotations.is_empty() {
        annotations(acc, &k.spec.common_annotations);
    }
    patches::json6902(files, k, acc)?;
    for r in &k.spec.replicas {
        replicas(acc, &r.name, r.count);
    }
    for image in &k.spec.images {
        for r in acc.iter_mut() {
            images(&mut r.obj, image);
        }
    }
    Ok(())
}

/// Kinds without a namespace, as kustomize's built-in schema knows them (custom kinds count as namespaced).
pub fn cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace"
            | "Node"
            | "PersistentVolume"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "CustomResourceDefinition"
            | "StorageClass"
            | "PriorityClass"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "APIService"
            | "CSIDriver"
            | "CSINode"
            | "VolumeAttachment"
            | "RuntimeClass"
            | "IngressClass"
            | "PodSecurityPolicy"
            | "CertificateSigningRequest"
            | "ComponentStatus"
            | "FlowSchema"
            | "PriorityLevelConfiguration"
            | "ClusterTrustBundle"
    )
}

fn namespace(acc: &mut [Res], ns: &str) {
    for r in acc.iter_mut() {
        let kind = r.kind().to_string();
        if kind == "Namespace" {
            r.rename(None, Some(ns));
        } else if !cluster_scoped(&kind) {
            r.rename(Some(ns), None);
        }
        if kind == "RoleBinding" || kind == "ClusterRoleBinding" {
            if let Some(subjects) = r.obj.get_mut("subjects").and_then(Value::as_array_mut) {
                for s in subjects {
                    let is_sa = s.get("kind").and_then(Value::as_str) == Some("ServiceAccount");
                    let default_ns = matches!(
                        s.get("namespace").and_then(Value::as_str),
                        None | Some("default") | Some("")
                    );
                    if is_sa && default_ns {
                        if let Some(m) = s.as_object_mut() {
                            m.insert("namespace".into(), Value::String(ns.into()));
                        }
                    }
                }
            }
        }
    }
}

fn prefix_suffix(acc: &mut [Res], prefix: &str, suffix: &str) {
    if prefix.is_empty() && suffix.is_empty() {
        return;
    }
    for r in acc.iter_mut() {
        let skip = matches!(r.kind(), "CustomResourceDefinition" | "Namespace")
            || (r.kind() == "APIService" && r.group() == "apiregistration.k8s.io");
        if !skip {
            let name = format!("{prefix}{}{suffix}", r.name());
            r.rename(None, Some(&name));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    Metadata,
    Templates,
    Selectors,
}

/// (kind, path, create, selector?) — kustomize's commonLabels field specs; `[]` walks every list element.
const LABEL_SPECS: &[(&str, &str, bool, bool)] = &[
    ("Service", "spec/selector", true, true),
    ("ReplicationController", "spec/selector", true, true),
    (
        "ReplicationController",
        "spec/template/metadata/labels",
        true,
        false,
    ),
    ("Deployment", "spec/selector/matchLabels", true, true),
    ("Deployment", "spec/template/metadata/labels", true, false),
    ("ReplicaSet", "spec/selector/matchLabels", true, true),
    ("ReplicaSet", "spec/template/metadata/labels", true, false),
    ("DaemonSet", "spec/selector/matchLabels", true, true),
    ("DaemonSet", "spec/template/metadata/labels", true, false),
    ("StatefulSet", "spec/selector/matchLabels", true, true),
    ("StatefulSet", "spec/template/metadata/labels", true, false),
    (
        "StatefulSet",
        "spec/volumeClaimTemplates[]/metadata/labels",
        true,
        false,
    ),
    ("Job", "spec/selector/matchLabels", false, true),
    ("Job", "spec/template/metadata/labels", true, false),
    (
        "CronJob",
        "spec/jobTemplate/spec/selector/matchLabels",
        false,
        true,
    ),
    ("CronJob", "spec/jobTemplate/metadata/labels", true, false),
    (
        "CronJob",
        "spec/jobTemplate/spec/template/metadata/labels",
        true,
        false,
    ),
    (
        "PodDisruptionBudget",
        "spec/selector/matchLabels",
        false,
        true,
    ),
    ("NetworkPolicy", "spec/podSelector/matchLabels", false, true),
    (
        "NetworkPolicy",
        "spec/ingress[]/from[]/podSelector/matchLabels",
        false,
        true,
    ),
    (
        "NetworkPolicy",
        "spec/egress[]/to[]/podSelector/matchLabels",
        false,
        true,
    ),
];

/// Pod (anti-)affinity and topology spread selectors of Deployments and StatefulSets (only those two kinds, as
/// kubectl shows) are selectors too; they are never created.
const AFFINITY_PATHS: &[&str] = &[
    "spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution[]/podAffinityTerm/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution[]/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution[]/podAffinityTerm/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution[]/labelSelector/matchLabels",
    "spec/template/spec/topologySpreadConstraints[]/labelSelector/matchLabels",
];

/// Pod templates get commonAnnotations too.
const ANNOTATION_SPECS: &[(&str, &str)] = &[
    (
        "ReplicationController",
        "spec/template/metadata/annotations",
    ),
    ("Deployment", "spec/template/metadata/annotations"),
    ("ReplicaSet", "spec/template/metadata/annotations"),
    ("DaemonSet", "spec/template/metadata/annotations"),
    ("StatefulSet", "spec/template/metadata/annotations"),
    ("Job", "spec/template/metadata/annotations"),
    ("CronJob", "spec/jobTemplate/metadata/annotations"),
    (
        "CronJob",
        "spec/jobTemplate/spec/template/metadata/annotations",
    ),
];

fn labels(acc: &mut [Res], pairs: &BTreeMap<String, String>, reach: Reach) {
    if pairs.is_empty() {
        return;
    }
    for r in acc.iter_mut() {
        merge_at(&mut r.obj, &["metadata", "labels"], true, pairs);
        if reach == Reach::Metadata {
            continue;
        }
        let kind = r.kind().to_string();
        for (k, path, create, selector) in LABEL_SPECS {
            if *k != kind || (*selector && reach != Reach::Selectors) {
                continue;
            }
            let path: Vec<&str> = path.split('/').collect();
            merge_at(&mut r.obj, &path, *create, pairs);
        }
        if reach == Reach::Selectors && (kind == "Deployment" || kind == "StatefulSet") {
            for path in AFFINITY_PATHS {
                let path: Vec<&str> = path.split('/').collect();
                merge_at(&mut r.obj, &path, false, pairs);
            }
        }
    }
}

fn annotations(acc: &mut [Res], pairs: &BTreeMap<String, String>) {
    for r in acc.iter_mut() {
        merge_at(&mut r.obj, &["metadata", "annotations"], true, pairs);
        let kind = r.kind().to_string();
        for (k, path) in ANNOTATION_SPECS {
            if *k == kind {
                let path: Vec<&str> = path.split('/').collect();
                merge_at(&mut r.obj, &path, true, pairs);
            }
        }
    }
}

/// Adds `pairs` to the map at `path`; `create` makes missing maps on the way, else a missing step ends quietly.
fn merge_at(v: &mut Value, path: &[&str], create: bool, pairs: &BTreeMap<String, String>) {
    let Some((first, rest)) = path.split_first() else {
        if v.is_null() {
            *v = Value::Object(Map::new());
        }
        if let Some(map) = v.as_object_mut() {
            for (k, val) in pairs {
                map.insert(k.clone(), Value::String(val.clone()));
            }
        }
        return;
    };
    let Some(map) = v.as_object_mut() else { return };
    if let Some(list) = first.strip_suffix("[]") {
        if let Some(items) = map.get_mut(list).and_then(Value::as_array_mut) {
            for item in items {
                merge_at(item, rest, create, pairs);
            }
        }
        return;
    }
    if !map.contains_key(*first) || map[*first].is_null() {
        if !create {
            return;
        }
        map.insert(first.to_string(), Value::Object(Map::new()));
    }
    if let Some(next) = map.get_mut(*first) {
        merge_at(next, rest, create, pairs);
    }
}

fn replicas(acc: &mut [Res], name: &str, count: i64) {
    for r in acc.iter_mut() {
        let scalable = matches!(
            r.kind(),
            "Deployment" | "ReplicaSet" | "StatefulSet" | "ReplicationController"
        );
        if scalable && r.answers_to(name) {
            if let Some(obj) = r.obj.as_object_mut() {
                let spec = obj
                    .entry("spec")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(spec) = spec.as_object_mut() {
                    spec.insert("replicas".into(), Value::from(count));
                }
            }
        }
    }
}

/// Rewrites `image` of every container and init container anywhere in the object.
fn images(v: &mut Value, image: &super::load::Image) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "containers" || key == "initContainers" {
                    if let Some(list) = child.as_array_mut() {
                        for c in list {
                            if let Some(slot) = c.get_mut("image") {
                                if let Some(new) = slot.as_str().and_then(|s| retag(s, image)) {
                                    *slot = Value::String(new);
                                }
                            }
                        }
                    }
                }
                images(child, image);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| images(i, image)),
        _ => {}
    }
}

/// The new reference for `current` if `image.name` names it.
fn retag(current: &str, image: &super::load::Image) -> Option<String> {
    // name[:tag][@digest]; a `:` before the last `/` belongs to a registry port.
    let (rest, digest) = match current.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (current, None),
    };
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if name != image.name {
        return None;
    }
    let new_name = image.new_name.as_deref().unwrap_or(name);
    Some(
        if let (Some(d), Some(t)) = (&image.digest, &image.new_tag) {
            format!("{new_name}:{t}@{d}")
        } else if let Some(d) = &image.digest {
            format!("{new_name}@{d}")
        } else if let Some(t) = &image.new_tag {
            format!("{new_name}:{t}")
        } else {
            let mut s = new_name.to_string();
            if let Some(t) = tag {
                s.push(':');
                s.push_str(t);
            }
            if let Some(d) = digest {
                s.push('@');
                s.push_str(d);
            }
            s
        },
    )
}
