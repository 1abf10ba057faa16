//! Setting up what the targets share for one round of the daemon (or one `sync`): the cluster connection and,
//! for the Kubernetes target, leader election. The orchestrators only see the result, a [`TargetContext`].

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{kube, Leadership, TargetContext};
use crate::config::Config;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("kubernetes: {0}")]
    Kubernetes(#[from] kube::KubeError),
}

impl TargetContext {
    /// What the targets of `config` share. Connects to the cluster when a source (or a removed one still to be
    /// pruned) uses the Kubernetes target, and with `shutdown` given, starts leader election and waits for its
    /// first round so that only the leader re-applies at start. The election's task is returned, so that a stop
    /// can wait for it to release the lease.
    pub async fn connect(
        config: &Config,
        store: &Arc<Store>,
        shutdown: Option<&watch::Receiver<bool>>,
    ) -> Result<(TargetContext, Option<JoinHandle<()>>), ContextError> {
        let k = &config.kubernetes;
        let mut ctx = TargetContext {
            agent_id: config.agent.id.clone(),
            store: store.clone(),
            cluster: None,
            leader: None,
            concurrency: k.concurrency,
        };
        let wanted = config
            .sources
            .iter()
            .any(|s| s.target == crate::config::TargetSpec::Kubernetes)
            || store
                .sources()?
                .iter()
                .any(|(_, r)| r.target.as_deref() == Some("kubernetes"));
        if !wanted {
            return Ok((ctx, None));
        }
        let cluster = Arc::new(
            kube::client::connect(
                k.kubeconfig.as_deref(),
                k.context.as_deref(),
                &k.field_manager,
                k.request_timeout,
            )
            .await?,
        );
        ctx.cluster = Some(cluster.clone());
        let (Some(shutdown), true) = (shutdown, k.leader_election) else {
            return Ok((ctx, None));
        };
        let settings = kube::lease::LeaseSettings {
            namespace: k.lease_namespace.clone().unwrap_or_else(own_namespace),
            name: k.lease_name(&config.agent.id),
            identity: format!("{}-{}", config.agent.id, boot_suffix()),
            duration: k.lease_duration,
            renew_deadline: k.renew_deadline,
        };
        let (tx, mut rx) = watch::channel(Leadership::Follower);
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let election = tokio::spawn(kube::lease::run(
            cluster,
            settings,
            tx,
            shutdown.clone(),
            Some(first_tx),
        ));
        let _ = tokio::time::timeout(k.renew_deadline, first_rx).await;
        rx.mark_unchanged();
        ctx.leader = Some(rx);
        Ok((ctx, Some(election)))
    }
}

/// The namespace of the pod we run in, else `default` (a host install).
fn own_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// Tells two processes with the same agent id apart (two replicas, or a restart while the old lease is held).
fn boot_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}
