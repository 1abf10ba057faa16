//! The agents the hub knows: those listed in the config and those enrolled with a bootstrap token.
//!
//! Heartbeats name their signer only by key fingerprint (the RFC 9421 `keyid`), so the registry is indexed
//! both ways: fingerprint -> agent to find who signed, id -> agent to list and enroll.
//!
//! Invariants: ids are unique, keys are unique (one key, one agent, so a fingerprint names exactly one
//! agent), and the config wins over the store when they disagree, because the operator edits the config.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use outpost_proto::keys::PublicKey;

use crate::config::Config;
use crate::store::Enrollment;

/// How the hub came to know an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An `[[agent]]` table in the config.
    Config,
    /// `POST /v1/enroll` with a bootstrap token.
    Enrolled,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Enrolled => "enrolled",
        }
    }
}

/// One agent allowed to send heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAgent {
    pub id: String,
    pub public_key: PublicKey,
    /// `SHA256:...`, the `keyid` its heartbeats carry.
    pub fingerprint: String,
    pub origin: Origin,
    /// How often it is expected to send; three missed intervals make it offline.
    pub heartbeat_interval: Duration,
}

/// Why an agent cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryConflict {
    #[error("agent id {id:?} is already known (from the {origin}); pick another id or remove the old entry")]
    IdTaken { id: String, origin: &'static str },
    #[error("this public key already belongs to agent {owner:?}; every agent needs its own key (run `outpost keygen`)")]
    KeyTaken { owner: String },
}

/// Agents by id (sorted, for stable listings) and by key fingerprint.
#[derive(Debug, Default)]
pub struct Registry {
    by_id: BTreeMap<String, KnownAgent>,
    by_fingerprint: HashMap<String, String>,
}

impl Registry {
    /// The config's agents, then the enrolled ones that do not clash with them. Returns a warning for each
    /// enrollment skipped, for the caller to log.
    pub fn build(config: &Config, enrollments: &[Enrollment]) -> (Registry, Vec<String>) {
        let mut registry = Registry::default();
        let mut warnings = Vec::new();
        for agent in &config.agents {
            let known = KnownAgent {
                id: agent.id.clone(),
                public_key: agent.public_key,
                fingerprint: agent.public_key.fingerprint(),
                origin: Origin::Config,
                // This agent's own, not `heartbeat_interval_of`: looking each one up by id in the list
                // made a build quadratic (171 ms for 10,000 agents, every REGISTRY_REFRESH).
                heartbeat_interval: agent
                    .heartbeat_interval
                    .unwrap_or(config.heartbeat_interval),
            };
            // The config was validated for unique ids and keys, so this cannot clash.
            if let Err(conflict) = registry.insert(known) {
                warnings.push(format!("config agent {:?} skipped: {conflict}", agent.id));
            }
        }
        for enrollment in enrollments {
            let Ok(public_key) = enrollment.public_key.parse::<PublicKey>() else {
                warnings.push(format!(
                    "enrolled agent {:?} skipped: its stored key {:?} is unreadable; list it in the config instead",
                    enrollment.agent_id, enrollment.public_key
                ));
                continue;
            };
            let known = KnownAgent {
                id: enrollment.agent_id.clone(),
                public_key,
                fingerprint: public_key.fingerprint(),
                origin: Origin::Enrolled,
                heartbeat_interval: config.heartbeat_interval,
            };
            if let Err(conflict) = registry.insert(known) {
                warnings.push(format!(
                    "enrolled agent {:?} skipped, the config wins: {conflict}",
                    enrollment.agent_id
                ));
            }
        }
        (registry, warnings)
    }

    /// Adds an agent unless its id or key is already known.
    pub fn insert(&mut self, agent: KnownAgent) -> Result<(), RegistryConflict> {
        self.check_unknown(&agent.id, &agent.fingerprint)?;
        self.by_fingerprint
            .insert(agent.fingerprint.clone(), agent.id.clone());
        self.by_id.insert(agent.id.clone(), agent);
        Ok(())
    }

    /// Whether an agent with this id and key could be added.
    pub fn check_new(&self, id: &str, key: &PublicKey) -> Result<(), RegistryConflict> {
        self.check_unknown(id, &key.fingerprint())
    }

    /// [`Registry::check_new`] with the key's fingerprint already at hand (a build computes each once).
    fn check_unknown(&self, id: &str, fingerprint: &str) -> Result<(), RegistryConflict> {
        if let Some(existing) = self.by_id.get(id) {
            return Err(RegistryConflict::IdTaken {
                id: id.to_owned(),
                origin: match existing.origin {
                    Origin::Config => "config",
                    Origin::Enrolled => "store of enrolled agents",
                },
            });
        }
        if let Some(owner) = self.by_fingerprint.get(fingerprint) {
            return Err(RegistryConflict::KeyTaken {
                owner: owner.clone(),
            });
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&KnownAgent> {
        self.by_id.get(id)
    }

    /// The agent whose key has this `SHA256:` fingerprint.
    pub fn by_fingerprint(&self, fingerprint: &str) -> Option<&KnownAgent> {
        self.by_fingerprint
            .get(fingerprint)
            .and_then(|id| self.by_id.get(id))
    }

    /// Every known agent, by id.
    pub fn iter(&self) -> impl Iterator<Item = &KnownAgent> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const KEY_A: &str = "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const KEY_B: &str = "ed25519:PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=";

    #[test]
    fn config_wins_and_keys_stay_unique() -> Result<(), Box<dyn std::error::Error>> {
        let text = format!(
            "[[agent]]\nid = \"a\"\npublic_key = \"{KEY_A}\"\nheartbeat_interval = \"10s\"\n"
        );
        let config = Config::parse(&text, Path::new("/hub.toml"))?;
        let enrollment = |id: &str, key: &str| Enrollment {
            agent_id: id.into(),
            public_key: key.into(),
            enrolled_at_ms: 0,
            token_sha256: String::new(),
        };
        let enrolled = [
            enrollment("a", KEY_B),
            enrollment("b", KEY_A),
            enrollment("c", KEY_B),
            enrollment("d", "garbage"),
        ];
        let (registry, warnings) = Registry::build(&config, &enrolled);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        let ids: Vec<&str> = registry.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        let a = registry.get("a").ok_or("a missing")?;
        assert_eq!(
            (a.origin, a.heartbeat_interval),
            (Origin::Config, Duration::from_secs(10))
        );
        let key_b: PublicKey = KEY_B.parse()?;
        let c = registry
            .by_fingerprint(&key_b.fingerprint())
            .ok_or("c missing")?;
        assert_eq!((c.id.as_str(), c.origin), ("c", Origin::Enrolled));
        Ok(())
    }
}
