//! The config's list tables, each checked on its own: `[[reader]]` and `[[admin]]` (who may read the fleet and use
//! the admin API), `[[agent]]` (agents enrolled by hand) and `[[assignment]]` (what agents are told to run).

use std::collections::HashSet;

use outpost_proto::keys::PublicKey;
use outpost_proto::wire::{Assignment, SourceSpec};
use serde::Deserialize;

use super::{is_agent_id, AgentEntry, Checker, ConfigError};
use crate::access::{Access, Credential, Role};
use crate::assign::{AssignmentRule, Assignments};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredential {
    pub(super) name: String,
    pub(super) token_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgent {
    pub(super) id: String,
    pub(super) public_key: String,
    pub(super) heartbeat_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAssignment {
    pub(super) agents: Vec<String>,
    pub(super) generation: u64,
    #[serde(default, rename = "source")]
    pub(super) sources: Vec<SourceSpec>,
}

impl Checker<'_> {
    pub(super) fn access(
        &self,
        public_read: bool,
        readers: Vec<RawCredential>,
        admins: Vec<RawCredential>,
    ) -> Result<Access, ConfigError> {
        let mut credentials: Vec<Credential> = Vec::new();
        let tables = [(Role::Read, readers), (Role::Admin, admins)];
        for (role, raw) in tables {
            for (index, entry) in raw.into_iter().enumerate() {
                let key = |name: &str| format!("{}[{index}].{name}", role.table());
                if entry.name.trim().is_empty() || entry.name.chars().any(char::is_control) {
                    return Err(self.invalid(
                        key("name"),
                        "must be a short printable name for the log (who holds this credential)",
                    ));
                }
                let Some(token_sha256) = crate::access::parse_sha256(&entry.token_sha256) else {
                    return Err(self.invalid(
                        key("token_sha256"),
                        "is not 64 hex digits; paste what `outpost-hub credential create` printed (the hash, never the token itself)",
                    ));
                };
                if credentials.iter().any(|c| c.token_sha256 == token_sha256) {
                    return Err(self.invalid(
                        key("token_sha256"),
                        "is listed twice; give every credential its own token",
                    ));
                }
                credentials.push(Credential {
                    name: entry.name,
                    role,
                    token_sha256,
                });
            }
        }
        Ok(Access {
            public_read,
            credentials,
        })
    }

    pub(super) fn agents(&self, raw: Vec<RawAgent>) -> Result<Vec<AgentEntry>, ConfigError> {
        let mut ids = HashSet::new();
        let mut fingerprints = HashSet::new();
        let mut agents = Vec::with_capacity(raw.len());
        for (index, agent) in raw.into_iter().enumerate() {
            let key = |name: &str| format!("agent[{index}].{name}");
            if !is_agent_id(&agent.id) {
                return Err(self.invalid(
                    key("id"),
                    format!("= {:?} is not an agent id; use 1-253 letters, digits, '.', '_' or '-' (the agent's [agent] id)", agent.id),
                ));
            }
            if !ids.insert(agent.id.clone()) {
                return Err(self.invalid(
                    key("id"),
                    format!("= {:?} is listed twice; list each agent once", agent.id),
                ));
            }
            let public_key: PublicKey = agent.public_key.parse().map_err(|_| {
                self.invalid(
                    key("public_key"),
                    format!("= {:?} is not a public key; copy the `ed25519:...` line that `outpost keygen` prints on the agent", agent.public_key),
                )
            })?;
            if !fingerprints.insert(public_key.fingerprint()) {
                return Err(self.invalid(
                    key("public_key"),
                    format!("of agent {:?} is already the key of another agent; every agent needs its own key (run `outpost keygen` on each)", agent.id),
                ));
            }
            let heartbeat_interval = agent
                .heartbeat_interval
                .map(|text| self.interval(&key("heartbeat_interval"), &text))
                .transpose()?;
            agents.push(AgentEntry {
                id: agent.id,
                public_key,
                heartbeat_interval,
            });
        }
        Ok(agents)
    }

    pub(super) fn assignments(&self, raw: Vec<RawAssignment>) -> Result<Assignments, ConfigError> {
        let mut rules = Vec::with_capacity(raw.len());
        for (index, table) in raw.into_iter().enumerate() {
            let key = |name: &str| format!("assignment[{index}].{name}");
            if table.agents.is_empty() {
                return Err(self.invalid(
                    key("agents"),
                    "is empty; list agent ids, or [\"*\"] for every agent",
                ));
            }
            for agent in &table.agents {
                if agent != "*" && !is_agent_id(agent) {
                    return Err(self.invalid(
                        key("agents"),
                        format!("contains {agent:?}, which is neither an agent id nor \"*\""),
                    ));
                }
            }
            let assignment = Assignment::new(table.generation, table.sources);
            assignment.validate().map_err(|e| {
                self.invalid(
                    format!("assignment[{index}]"),
                    format!("is not a valid assignment: {e}"),
                )
            })?;
            rules.push(AssignmentRule {
                agents: table.agents,
                assignment,
            });
        }
        Assignments::new(rules).map_err(|clash| {
            self.invalid(
                format!("assignment[{}].generation", clash.second),
                clash.to_string(),
            )
        })
    }
}
