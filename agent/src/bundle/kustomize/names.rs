//! The transformers that change identities: namePrefix / nameSuffix (PrefixTransformer, SuffixTransformer,
//! PrefixSuffixTransformer) and namespace (NamespaceTransformer). Both are recorded on every object they ran
//! over, for buildMetadata's transformerAnnotations.

use serde_json::Value;

use super::config::TransformerConfig;
use super::fieldspec::{self, FieldSpec};
use super::Res;

/// Objects without a namespace, as kustomize's built-in schema knows them: Kubernetes' own cluster-scoped kinds
/// (a custom kind of the same name in another group counts as namespaced). kustomize v5.5's schema predates
/// the admission policy kinds, so it gives them a namespace; so does Outpost, to build the same objects.
pub fn cluster_scoped(r: &Res) -> bool {
    let group = r.group();
    let builtin_group = group.is_empty() || group.ends_with("k8s.io") || group == "policy";
    builtin_group && cluster_scoped_kind(r.kind())
}

fn cluster_scoped_kind(kind: &str) -> bool {
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
            | "ClusterRoleList"
            | "ClusterRoleBindingList"
    )
}

/// Where the object is the core `v1` Namespace (a custom kind called Namespace is an ordinary object).
fn is_namespace(r: &Res) -> bool {
    r.kind() == "Namespace" && r.api_version() == "v1"
}

/// Adds `prefix` and `suffix` where the field specs say: the name of every object a `metadata/name` spec
/// selects (once per such spec, as in kustomize), and any other field a spec names. No specs means the default,
/// every object's name.
pub fn prefix_suffix(
    acc: &mut [Res],
    prefix: &str,
    suffix: &str,
    specs: &[FieldSpec],
    file: &str,
    by: Value,
) {
    let default = [FieldSpec::new(None, "metadata/name", false)];
    let specs = if specs.is_empty() {
        &default[..]
    } else {
        specs
    };
    for r in acc.iter_mut() {
        let skip = matches!(r.kind(), "CustomResourceDefinition")
            || is_namespace(r)
            || (r.kind() == "APIService" && r.group() == "apiregistration.k8s.io");
        if !skip {
            let selected: Vec<&FieldSpec> = specs.iter().filter(|s| s.selects(r)).collect();
            for spec in selected {
                if spec.path != "metadata/name" {
                    fieldspec::visit(&mut r.obj, spec, &mut |v| {
                        if let Some(old) = v.as_str() {
                            *v = Value::String(format!("{prefix}{old}{suffix}"));
                        }
                    });
                    continue;
                }
                // kustomize records the prefix and suffix each object received (its name references are
                // later matched by them) and its identity before the change.
                if !prefix.is_empty() {
                    r.lineage.prefixes.push(prefix.to_string());
                }
                if !suffix.is_empty() {
                    r.lineage.suffixes.push(suffix.to_string());
                }
                if !prefix.is_empty() || !suffix.is_empty() {
                    r.store_previous_id();
                }
                let name = format!("{prefix}{}{suffix}", r.name());
                r.rename(None, Some(&name));
            }
        }
        r.transformations.push((file.to_string(), by.clone()));
    }
}

/// What `namespace:` or a NamespaceTransformer says.
pub struct NamespaceOptions {
    pub namespace: String,
    /// Only objects without a namespace get one.
    pub unset_only: bool,
    /// `defaultOnly` (the default), `allServiceAccounts` or `none`: which RoleBinding subjects follow.
    pub subjects: String,
    pub specs: Vec<FieldSpec>,
    pub file: String,
    pub by: Value,
}

impl NamespaceOptions {
    pub fn new(namespace: &str, file: &str, by: Value) -> NamespaceOptions {
        NamespaceOptions {
            namespace: namespace.into(),
            unset_only: false,
            subjects: "defaultOnly".into(),
            specs: Vec::new(),
            file: file.into(),
            by,
        }
    }
}

pub fn namespace(acc: &mut [Res], o: &NamespaceOptions, config: &TransformerConfig) {
    let ns = o.namespace.as_str();
    for r in acc.iter_mut() {
        // kustomize records every object's identity before setting a namespace, changed or not.
        if !ns.is_empty() {
            r.store_previous_id();
        }
        let kind = r.kind().to_string();
        let custom = !o.specs.is_empty();
        let selected = !custom
            || o.specs
                .iter()
                .any(|s| s.path == "metadata/namespace" && s.selects(r));
        if is_namespace(r) {
            if selected {
                r.rename(None, Some(ns));
            }
        } else if selected && !cluster_scoped(r) && (!o.unset_only || r.namespace().is_empty()) {
            r.rename(Some(ns), None);
        }
        // Fields that hold the namespace of a referred object (an APIService's service, a CRD's conversion
        // webhook) follow it.
        for spec in &config.namespace {
            if spec.path == "metadata/name" || !spec.selects(r) {
                continue;
            }
            let spec = FieldSpec {
                create: false,
                ..spec.clone()
            };
            fieldspec::visit(&mut r.obj, &spec, &mut |v| {
                if v.is_string() {
                    *v = Value::String(ns.into());
                }
            });
        }
        if kind == "RoleBinding" || kind == "ClusterRoleBinding" {
            if let Some(subjects) = r.obj.get_mut("subjects").and_then(Value::as_array_mut) {
                for s in subjects {
                    let is_sa = s.get("kind").and_then(Value::as_str) == Some("ServiceAccount");
                    let follows = match o.subjects.as_str() {
                        "allServiceAccounts" => true,
                        "none" => false,
                        _ => s.get("name").and_then(Value::as_str) == Some("default"),
                    };
                    if is_sa && follows {
                        if let Some(m) = s.as_object_mut() {
                            m.insert("namespace".into(), Value::String(ns.into()));
                        }
                    }
                }
            }
        }
        r.transformations.push((o.file.clone(), o.by.clone()));
    }
}
