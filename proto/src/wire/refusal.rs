//! The body of the hub's signed refusal of a heartbeat (HTTP 409): the one answer besides an acknowledgement
//! that lets an agent remove a heartbeat from its outbox.
//!
//! A refusal is only worth acting on when it cannot be forged or replayed onto another heartbeat: the hub signs
//! it like an acknowledgement (covering `@status`), and the body names the agent and the `seq` refused, which
//! the agent checks against the heartbeat it sent. Anything else that answers 409 is treated as a failed send.

use serde::{Deserialize, Serialize};

/// `{"error": reason, "message": ..., "agent_id": ..., "seq": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRefusal {
    /// A stable token, e.g. `seq_not_newer` or `seq_reused`.
    pub error: String,
    /// What went wrong and what to do, for the agent's operator.
    pub message: String,
    /// The agent whose heartbeat was refused.
    pub agent_id: String,
    /// The refused heartbeat's `seq`.
    pub seq: u64,
}

impl HeartbeatRefusal {
    /// Reads a refusal body; `None` when it is not one (e.g. a proxy's own 409 page).
    pub fn parse(body: &[u8]) -> Option<HeartbeatRefusal> {
        serde_json::from_slice(body).ok()
    }

    /// Whether this refusal is about heartbeat `seq` of agent `agent_id`, and nothing else.
    pub fn refuses(&self, agent_id: &str, seq: u64) -> bool {
        self.agent_id == agent_id && self.seq == seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_one_heartbeat() {
        let body = br#"{"error":"seq_not_newer","message":"m","agent_id":"a","seq":7}"#;
        let refusal = HeartbeatRefusal::parse(body).unwrap();
        assert!(refusal.refuses("a", 7));
        assert!(!refusal.refuses("a", 8) && !refusal.refuses("b", 7));
        assert_eq!(HeartbeatRefusal::parse(b"<html>409</html>"), None);
        assert_eq!(
            HeartbeatRefusal::parse(br#"{"error":"x","message":"m"}"#),
            None
        );
    }
}
