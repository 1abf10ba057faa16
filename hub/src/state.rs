//! [`HubState`]: everything a request handler needs, opened once at start and shared by every connection.
//!
//! Opening it is where the hub's identity is settled: the signing key is loaded, or created (mode 0600)
//! when missing so a first start needs no extra step, and its public key is what operators copy into each
//! agent's `hub_key`. Nothing here is global; tests open several hubs in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use outpost_proto::keys::{KeyError, Pkcs8Document, PublicKey, SigningKey};

use crate::agent_refusals::AgentRefusals;
use crate::authority::Authorities;
use crate::backend::{BackendError, FleetStore};
use crate::config::Config;
use crate::limit::{Limiter, ReadGate};
use crate::metrics::{HeartbeatCounters, RefusedCounters};
use crate::refusals::RefusalLog;
use crate::registry::Registry;
use crate::status::AgentView;

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("hub key {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error(
        "cannot create the folder {path} for the hub key: {source}; check key_file and permissions"
    )]
    KeyDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the hub's store: {0}")]
    Store(#[from] BackendError),
}

/// The hub's shared state.
#[derive(Debug)]
pub struct HubState {
    pub config: Config,
    pub store: Arc<dyn FleetStore>,
    registry: RwLock<Registry>,
    /// Signs every heartbeat reply.
    pub key: SigningKey,
    pub public_key: PublicKey,
    /// Whether this start created the key (the operator must then distribute the public key).
    pub key_created: bool,
    /// Answers to heartbeats since this start, for `GET /metrics`.
    pub heartbeats: HeartbeatCounters,
    /// The names a heartbeat's signed `@authority` must be one of.
    pub authorities: Authorities,
    /// Enrollment tries per source address and in total.
    pub enroll_limit: Limiter,
    /// Reads that load heartbeats from disk, a few at a time.
    pub reads: ReadGate,
    /// What of the refused requests goes to the log.
    pub refusals: RefusalLog,
    /// Every refused request, for `GET /metrics`.
    pub refused: RefusedCounters,
    /// Each enrolled agent's recent refusals, for its page.
    pub agent_refusals: AgentRefusals,
    /// Wakes the rollout driver ([`crate::rollout::driver`]) when heartbeats arrive or an operator acts.
    pub rollout_wake: tokio::sync::Notify,
    /// Who holds a rollout's lease in the store when this process steps it: unique per process.
    pub rollout_owner: String,
    /// The rollouts as the driver last read them, for the fleet page and the metrics.
    rollouts: RwLock<Vec<crate::rollout::Rollout>>,
    /// Which sites this replica has seen pinned to each release ([`crate::rollout::members`]).
    pub release_members: crate::rollout::members::Members,
}

impl HubState {
    /// Loads or creates the key, opens the store and builds the registry, for a hub bound to `local_addr`
    /// (which settles the default names when `listen` has port 0). The strings returned are warnings for
    /// the log (enrollments the config overrides).
    pub async fn open(
        config: Config,
        local_addr: SocketAddr,
    ) -> Result<(HubState, Vec<String>), OpenError> {
        let mut notes = Vec::new();
        let authorities = match (&config.names, &config.tls) {
            (Some(names), _) => Authorities::configured(names.iter().map(String::as_str)),
            (None, Some(files)) => {
                // rustls serves certificates webpki cannot fully parse; such a hub still starts, on the
                // listen address's names, and says how to add the rest.
                let cert_names = crate::tls::certificate_dns_names(files).unwrap_or_else(|e| {
                    notes.push(format!("the hub answers heartbeats only for its listen address: {e}; list the names agents use in `names`"));
                    Vec::new()
                });
                Authorities::defaults(local_addr, &cert_names)
            }
            (None, None) => Authorities::defaults(local_addr, &[]),
        };
        let key_file = config.key_file.clone();
        let (key, key_created) = tokio::task::spawn_blocking(move || load_or_create_key(&key_file))
            .await
            .map_err(|e| {
                OpenError::Store(BackendError::Database(format!(
                    "loading the hub key failed: {e}"
                )))
            })??;
        let store = crate::backend::open(&config, true).await?;
        let (registry, mut warnings) = Registry::build(&config, &store.enrollments().await?);
        warnings.append(&mut notes);
        let public_key = key.public_key();
        let state = HubState {
            config,
            store,
            registry: RwLock::new(registry),
            key,
            public_key,
            key_created,
            heartbeats: HeartbeatCounters::default(),
            authorities,
            enroll_limit: Limiter::new(
                crate::enroll::PER_SOURCE,
                crate::enroll::TOTAL,
                Instant::now(),
            ),
            reads: ReadGate::default(),
            refusals: RefusalLog::new(Instant::now()),
            refused: RefusedCounters::default(),
            agent_refusals: AgentRefusals::default(),
            rollout_wake: tokio::sync::Notify::new(),
            rollout_owner: rollout_owner(local_addr),
            rollouts: RwLock::new(Vec::new()),
            release_members: Default::default(),
        };
        Ok((state, warnings))
    }

    /// The fleet at `now_ms`, as `GET /v1/agents`, the fleet page and the metrics all show it.
    pub async fn views(&self, now_ms: u64) -> Result<Vec<AgentView>, BackendError> {
        let records = self.store.agents().await?;
        let stored = self.store.assignment_generations().await?;
        let mut views = crate::status::views(&self.config, &self.registry(), records, now_ms);
        crate::status::with_stored_generations(&mut views, &stored);
        crate::status::with_labels(&mut views, self.store.labels().await?);
        Ok(views)
    }

    /// The registry for reading. A panic elsewhere while holding the lock leaves the map itself intact
    /// (every insert is a single step), so a poisoned lock is still safe to use.
    pub fn registry(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rebuilds the registry from the config and the store's enrollments, so agents enrolled through another
    /// hub replica are known here too. Returns the warnings of the rebuild.
    pub async fn refresh_registry(&self) -> Result<Vec<String>, BackendError> {
        let enrollments = self.store.enrollments().await?;
        let (registry, warnings) = Registry::build(&self.config, &enrollments);
        *self.registry_mut() = registry;
        Ok(warnings)
    }

    /// Keeps the rollouts the driver just read.
    pub fn remember_rollouts(&self, rollouts: Vec<crate::rollout::Rollout>) {
        *self
            .rollouts
            .write()
            .unwrap_or_else(PoisonError::into_inner) = rollouts;
    }

    /// The rollouts as the driver last read them.
    pub fn rollouts(&self) -> RwLockReadGuard<'_, Vec<crate::rollout::Rollout>> {
        self.rollouts.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The registry for enrolling.
    pub fn registry_mut(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A lease owner name no other hub process shares: the address, the process and random bits.
fn rollout_owner(local_addr: SocketAddr) -> String {
    let mut bits = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bits);
    format!(
        "{local_addr}/{}/{}",
        std::process::id(),
        crate::access::hex(&bits)
    )
}

/// Loads the hub key, creating it first when the file does not exist. Returns whether it was created.
pub fn load_or_create_key(path: &Path) -> Result<(SigningKey, bool), OpenError> {
    let key_error = |source| OpenError::Key {
        path: path.to_owned(),
        source,
    };
    if !path.exists() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| OpenError::KeyDir {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        match Pkcs8Document::generate().and_then(|doc| doc.save(path)) {
            Ok(()) => return Ok((SigningKey::load(path).map_err(key_error)?, true)),
            // Another process created it between our check and our write: use theirs.
            Err(KeyError::AlreadyExists { .. }) => {}
            Err(e) => return Err(key_error(e)),
        }
    }
    Ok((SigningKey::load(path).map_err(key_error)?, false))
}

/// The hub's clock, Unix milliseconds. A clock before 1970 reads as 0 rather than failing a request.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
