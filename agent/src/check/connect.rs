//! The checks that need the network: each source's ref, the Kubernetes API and the agent's permissions for the
//! kinds of its last good bundles (SelfSubjectAccessReview), and the hub (a signed ping, [`super::hub`]).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::Finding;
use crate::config::{Config, TargetSpec};
use crate::deploy::kube::{self, client::Cluster, plan};
use crate::source::Source;
use crate::store::{Store, StoreError};

pub async fn all(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for s in &config.sources {
        // A separate cache, so a check never writes the running daemon's; probing writes nothing anyway.
        let source = Source::new(
            s,
            &config.agent.state_dir.join("git-check"),
            config.agent.limits,
        );
        let subject = format!("source {:?} {}", s.name, s.git_ref);
        out.push(match source.probe().await {
            Ok(probe) => Finding::ok(subject, format!("{} at {}", probe.ref_name, probe.commit)),
            Err(e) => Finding::fail(subject, e.to_string()),
        });
    }
    if config
        .sources
        .iter()
        .any(|s| s.target == TargetSpec::Kubernetes)
    {
        out.extend(kubernetes(config).await);
    }
    if let Some(upstream) = &config.upstream {
        out.push(super::hub::check(config, upstream).await);
    }
    out
}

async fn kubernetes(config: &Config) -> Vec<Finding> {
    let k = &config.kubernetes;
    let cluster = match kube::client::connect(
        k.kubeconfig.as_deref(),
        k.context.as_deref(),
        &k.field_manager,
        k.request_timeout,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return vec![Finding::fail("kubernetes API", e.to_string())],
    };
    let version = match cluster
        .request(http::Method::GET, "/version", None, None, None)
        .await
    {
        Ok(answer) => answer
            .body
            .get("gitVersion")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string(),
        Err(Ok(f)) => return vec![Finding::fail("kubernetes API", f.describe())],
        Err(Err(e)) => return vec![Finding::fail("kubernetes API", e.to_string())],
    };
    let mut out = vec![Finding::ok(
        "kubernetes API",
        format!("{} answers, version {version}", cluster.server),
    )];
    out.extend(permissions(config, &cluster).await);
    out
}

/// Verbs the agent uses on every kind it applies: read and list (drift, conflicts), patch (server-side apply),
/// delete (prune, rollback).
const VERBS: [&str; 4] = ["get", "list", "patch", "delete"];

/// Asks the API server, per kind and namespace of each Kubernetes source's last good bundle, whether this agent
/// may do what it does with them.
async fn permissions(config: &Config, cluster: &Cluster) -> Vec<Finding> {
    let store = match Store::open(&config.agent.state_dir) {
        Ok(store) => store,
        Err(StoreError::Locked { .. }) => {
            return vec![Finding::warn(
                "kubernetes permissions",
                "the store is held by `outpost run`, so the kinds of the last good bundles cannot be read; the daemon's log shows any refusal",
            )]
        }
        Err(e) => return vec![Finding::warn("kubernetes permissions", e.to_string())],
    };
    let mut out = Vec::new();
    for s in config
        .sources
        .iter()
        .filter(|s| s.target == TargetSpec::Kubernetes)
    {
        let subject = format!("source {:?} permissions", s.name);
        let bundle = match store.last_good(&s.name) {
            Ok(Some((_, bundle))) => bundle,
            Ok(None) => {
                out.push(Finding::ok(
                    subject,
                    "no last good bundle yet; nothing to check",
                ));
                continue;
            }
            Err(e) => {
                out.push(Finding::warn(subject, e.to_string()));
                continue;
            }
        };
        // (group, version, kind, namespace) once each.
        let mut seen = BTreeSet::new();
        for object in &bundle.objects {
            if let Some(mut r) = plan::object_ref(object) {
                if r.namespace.is_none() {
                    r.namespace = Some(s.namespace.clone());
                }
                r.name = String::new();
                seen.insert(r);
            }
        }
        let mut refused = Vec::new();
        for r in &seen {
            let res = match cluster.resolve(r).await {
                Ok(Some(res)) => res,
                Ok(None) => {
                    refused.push(format!(
                        "{}/{}: the API server does not serve this kind",
                        r.api_version(),
                        r.kind
                    ));
                    continue;
                }
                Err(e) => {
                    refused.push(format!("{}/{}: {e}", r.api_version(), r.kind));
                    continue;
                }
            };
            let namespace = res.namespaced.then(|| r.namespace.clone()).flatten();
            for verb in VERBS {
                match allowed(cluster, &res.group, &res.plural, namespace.as_deref(), verb).await {
                    Ok(true) => {}
                    Ok(false) => refused.push(format!(
                        "{verb} {}{}",
                        res.plural,
                        namespace
                            .as_deref()
                            .map(|n| format!(" in {n}"))
                            .unwrap_or_default()
                    )),
                    Err(why) => refused.push(format!("{verb} {}: {why}", res.plural)),
                }
            }
        }
        out.push(if refused.is_empty() {
            Finding::ok(
                subject,
                format!("{} kinds: get, list, patch and delete allowed", seen.len()),
            )
        } else {
            Finding::fail(
                subject,
                format!(
                    "not allowed: {}; grant these to the agent's account (RBAC)",
                    refused.join(", ")
                ),
            )
        });
    }
    out
}

/// One SelfSubjectAccessReview.
async fn allowed(
    cluster: &Cluster,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    verb: &str,
) -> Result<bool, Refusal> {
    let mut attributes = json!({"group": group, "resource": resource, "verb": verb});
    if let Some(ns) = namespace {
        attributes["namespace"] = json!(ns);
    }
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    });
    match cluster
        .request(
            http::Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some("application/json"),
            None,
            Some(&review),
        )
        .await
    {
        Ok(answer) => Ok(answer
            .body
            .pointer("/status/allowed")
            .and_then(Value::as_bool)
            == Some(true)),
        Err(Ok(f)) => Err(Refusal::Api(f.describe())),
        Err(Err(e)) => Err(Refusal::Unreachable(e)),
    }
}

/// Why a SelfSubjectAccessReview got no answer.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// The API server's own words (with its hint), e.g. the review API is forbidden.
    #[error("{0}")]
    Api(String),
    #[error(transparent)]
    Unreachable(#[from] kube::KubeError),
}
