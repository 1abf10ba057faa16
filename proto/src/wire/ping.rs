//! `POST /v1/ping`: a signed no-op (`outpost check --connect`). The agent signs `{"agent_id": ...}` exactly
//! as it signs a heartbeat; the hub checks the signature with the key it has enrolled for that agent and
//! answers the same body signed with the hub key. Nothing is stored and no `seq` is used, so a check never
//! disturbs the heartbeats; and a signed answer naming the agent proves both keys at once: the hub knows the
//! agent's, and the agent holds the hub's.

use serde::{Deserialize, Serialize};

/// The largest ping body either side reads.
pub const MAX_PING_BYTES: usize = 1024;

/// `{"agent_id": ...}`: the request and the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// The agent the request speaks for, and the answer is for.
    pub agent_id: String,
}

impl Ping {
    pub fn to_body(&self) -> Vec<u8> {
        // One string field always encodes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a ping body; `None` when it is not one (or is over [`MAX_PING_BYTES`]).
    pub fn parse(body: &[u8]) -> Option<Ping> {
        if body.len() > MAX_PING_BYTES {
            return None;
        }
        serde_json::from_slice(body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_one_agent_id() {
        let ping = Ping {
            agent_id: "store-042".into(),
        };
        assert_eq!(ping.to_body(), br#"{"agent_id":"store-042"}"#);
        assert_eq!(Ping::parse(&ping.to_body()), Some(ping));
        assert_eq!(Ping::parse(br#"{"agent_id":"a","seq":1}"#), None);
        assert_eq!(Ping::parse(b"{}"), None);
        let long = format!(r#"{{"agent_id":"{}"}}"#, "a".repeat(MAX_PING_BYTES));
        assert_eq!(Ping::parse(long.as_bytes()), None);
    }
}
