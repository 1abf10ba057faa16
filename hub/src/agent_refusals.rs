//! The recent refusals of each enrolled agent's requests, for its page (issue 18 item 7): a replayed
//! heartbeat, a stale signature or a wrong `@authority` shows up where the operator looks for that agent,
//! not only in the hub's log.
//!
//! Kept in this process's memory, not in the store: each replica remembers what it refused, and the pages
//! say "seen by this hub". A refused request is otherwise never written anywhere (nothing of it is
//! recorded), and a row per refusal would let anyone holding an agent's key fingerprint, which is not
//! secret, turn each forged heartbeat (cheap to send, cheap to refuse) into a database write shared by
//! every replica.
//!
//! Bounded: only refusals of a request signed with an enrolled agent's key name an agent (an unknown key
//! names none, so unknown ids are never remembered); [`PER_AGENT`] per agent, each message cut at
//! [`MESSAGE_CHARS`], and at most [`AGENTS`] agents, the one whose last refusal is oldest forgotten first.
//! So at most about 7 MB however the refusals come.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// Refusals remembered per agent, the newest.
pub const PER_AGENT: usize = 20;
/// Agents whose refusals are remembered at once.
pub const AGENTS: usize = 1_000;
/// A refusal's message is cut after this many characters.
pub const MESSAGE_CHARS: usize = 300;

/// One refused request of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRefusal {
    /// When the hub refused it (hub clock, RFC 3339).
    pub at: Option<String>,
    #[serde(skip)]
    pub at_ms: u64,
    /// The HTTP status answered.
    pub status: u16,
    /// The refusal's reason token, e.g. `seq_not_newer`.
    pub reason: &'static str,
    /// What was wrong and what to do, as the agent was told.
    pub message: String,
}

/// The recent refusals of each agent, newest last.
#[derive(Debug, Default)]
pub struct AgentRefusals {
    agents: Mutex<HashMap<String, VecDeque<AgentRefusal>>>,
}

impl AgentRefusals {
    /// Remembers a refusal of `agent`'s request at `at_ms`.
    pub fn note(&self, agent: &str, at_ms: u64, status: u16, reason: &'static str, message: &str) {
        let refusal = AgentRefusal {
            at: crate::status::format_ms(at_ms),
            at_ms,
            status,
            reason,
            message: cut(message),
        };
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        if !agents.contains_key(agent) && agents.len() >= AGENTS {
            let stalest = agents
                .iter()
                .min_by_key(|(_, list)| list.back().map_or(0, |r| r.at_ms))
                .map(|(id, _)| id.clone());
            if let Some(stalest) = stalest {
                agents.remove(&stalest);
            }
        }
        let list = agents.entry(agent.to_owned()).or_default();
        if list.len() >= PER_AGENT {
            list.pop_front();
        }
        list.push_back(refusal);
    }

    /// Forgets `agent`'s refusals (the agent was forgotten: an agent enrolled later under its id starts clean).
    pub fn forget(&self, agent: &str) {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        agents.remove(agent);
    }

    /// `agent`'s remembered refusals, newest first.
    pub fn recent(&self, agent: &str) -> Vec<AgentRefusal> {
        let agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        agents
            .get(agent)
            .map(|list| list.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// The message, cut at [`MESSAGE_CHARS`] characters (not bytes, so never inside one).
fn cut(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_CHARS) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_agent_keeps_its_newest_refusals_newest_first() {
        let refusals = AgentRefusals::default();
        for n in 0..(PER_AGENT as u64 + 5) {
            refusals.note(
                "store-042",
                1_000 + n,
                409,
                "seq_not_newer",
                &format!("replay {n}"),
            );
        }
        refusals.note("store-043", 5, 401, "stale_signature", "old");
        let recent = refusals.recent("store-042");
        assert_eq!(recent.len(), PER_AGENT);
        assert_eq!(recent[0].message, format!("replay {}", PER_AGENT + 4));
        assert_eq!(recent[PER_AGENT - 1].message, "replay 5");
        assert_eq!(refusals.recent("store-043")[0].reason, "stale_signature");
        assert!(refusals.recent("store-044").is_empty());
        refusals.forget("store-042");
        assert!(refusals.recent("store-042").is_empty());
        assert_eq!(refusals.recent("store-043").len(), 1);
    }

    #[test]
    fn memory_is_bounded_by_agents_and_message_length() {
        let refusals = AgentRefusals::default();
        for n in 0..=AGENTS as u64 {
            // Agent 0 is refused last of all, so it is the one that stays when the table is full.
            let at = if n == 0 { 10_000_000 } else { n };
            refusals.note(&format!("agent-{n}"), at, 401, "bad_signature", "x");
        }
        let kept = refusals.agents.lock().map(|a| a.len()).unwrap_or(0);
        assert_eq!(kept, AGENTS);
        assert_eq!(refusals.recent("agent-0").len(), 1);
        assert!(refusals.recent("agent-1").is_empty(), "the stalest goes");
        assert_eq!(refusals.recent(&format!("agent-{AGENTS}")).len(), 1);

        let long = "é".repeat(MESSAGE_CHARS * 3);
        refusals.note("agent-0", 10_000_001, 400, "invalid_heartbeat", &long);
        let message = &refusals.recent("agent-0")[0].message;
        assert_eq!(
            message.chars().count(),
            MESSAGE_CHARS + 1,
            "cut, with an ellipsis"
        );
    }
}
