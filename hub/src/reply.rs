//! What the hub answers: [`Reply`] for a request it accepted, [`Rejection`] for one it refused.
//!
//! Handlers return these plain values and the server turns them into HTTP, so the decisions stay testable
//! without a socket. A rejection always carries a machine-readable `reason` and a sentence for a human, in
//! the body (`{"error": reason, "message": ...}`) and in the hub's log. Only what an agent acts on is signed:
//! a heartbeat acknowledgement (it carries the assignment) and a heartbeat refusal (409, the agent drops the
//! heartbeat); an agent treats any unsigned answer as a failed send and keeps the heartbeat.

use serde::Serialize;

/// The media type of every body the hub sends or accepts.
pub const JSON: &str = "application/json";

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Extra headers, e.g. the signature fields. `Content-Type` is `application/json` unless one of these
    /// names another (the fleet page and the metrics are not JSON).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// An unsigned JSON answer.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Reply, Rejection> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Rejection::internal(format!("cannot encode the reply: {e}")))?;
        Ok(Reply {
            status,
            headers: Vec::new(),
            body,
        })
    }

    /// An unsigned answer of another media type, e.g. HTML or Prometheus text.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body: body.into_bytes(),
        }
    }
}

/// A refused request. Nothing was recorded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// A stable token clients can match on, e.g. `unknown_key`.
    pub reason: &'static str,
    /// What went wrong and what to do, for the agent's operator.
    pub message: String,
    /// For a refusal that passes by itself (rate limited, busy): whole seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// Set for a refusal the agent acts on: the exact body sent, and its signature headers.
    pub signed: Option<Box<SignedBody>>,
    /// A refusal for want of a credential: answered with [`crate::access::CHALLENGE`] so a browser asks.
    pub challenge: bool,
    /// The enrolled agent whose signed request this refuses, shown on its page ([`crate::agent_refusals`]);
    /// `None` when no enrolled agent's key signed it.
    pub agent: Option<String>,
}

/// A body and the signature headers over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBody {
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl Rejection {
    pub fn new(status: u16, reason: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            status,
            reason,
            message: message.into(),
            retry_after: None,
            signed: None,
            challenge: false,
            agent: None,
        }
    }

    /// The same refusal, of a request signed by enrolled agent `agent_id`.
    pub fn about(self, agent_id: &str) -> Rejection {
        Rejection {
            agent: Some(agent_id.to_owned()),
            ..self
        }
    }

    /// The same refusal, asking the client for a credential (`WWW-Authenticate`).
    pub fn with_challenge(self) -> Rejection {
        Rejection {
            challenge: true,
            ..self
        }
    }

    /// The same refusal, telling the client to try again in `secs` seconds.
    pub fn retry_after(self, secs: u64) -> Rejection {
        Rejection {
            retry_after: Some(secs),
            ..self
        }
    }

    /// Makes this refusal of heartbeat `seq` of agent `agent_id` one the agent may act on: the body names both
    /// (so it cannot be replayed onto another heartbeat) and is signed with the hub key like an acknowledgement.
    pub fn signed_refusal(
        mut self,
        agent_id: &str,
        seq: u64,
        key: &outpost_proto::keys::SigningKey,
        now: i64,
    ) -> Result<Rejection, Rejection> {
        let refusal = outpost_proto::wire::HeartbeatRefusal {
            error: self.reason.to_owned(),
            message: self.message.clone(),
            agent_id: agent_id.to_owned(),
            seq,
        };
        let body = serde_json::to_vec(&refusal)
            .map_err(|e| Rejection::internal(format!("cannot encode a refusal: {e}")))?;
        let headers = outpost_proto::signed::sign_response(self.status, &body, JSON, key, now)
            .map_err(|e| Rejection::internal(format!("cannot sign a refusal: {e}")))?;
        self.signed = Some(Box::new(SignedBody { headers, body }));
        Ok(self.about(agent_id))
    }

    /// The headers sent with the body: the signature fields of a signed refusal, else none.
    pub fn headers(&self) -> &[(&'static str, String)] {
        self.signed.as_ref().map_or(&[], |s| &s.headers)
    }

    /// A fault on the hub's side; the message goes to the log, the client learns only that it should retry.
    pub fn internal(message: impl Into<String>) -> Rejection {
        Rejection::new(500, "internal", message)
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> Vec<u8> {
        if let Some(signed) = &self.signed {
            return signed.body.clone();
        }
        let message = if self.status >= 500 {
            "the hub failed to handle this request; retry later (the hub's log has the cause)"
        } else {
            &self.message
        };
        let body = ErrorBody {
            error: self.reason,
            message,
        };
        // Two strings always encode; the fallback keeps this infallible without an unwrap.
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":\"internal\"}".to_vec())
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.reason, self.message)
    }
}

/// The refusal for a store failure: 503 with `Retry-After` when the store is only unavailable (the agent
/// keeps its heartbeat and sends it again), else 500. `what` says what was being done, for the log.
pub fn store_failure(error: &crate::backend::BackendError, what: String) -> Rejection {
    if error.is_unavailable() {
        Rejection::new(
            503,
            "store_unavailable",
            format!("{what}: {error}; try again shortly"),
        )
        .retry_after(STORE_RETRY_SECS)
    } else {
        Rejection::internal(format!("{what}: {error}"))
    }
}

/// Seconds a client is told to wait when the store is unavailable.
pub const STORE_RETRY_SECS: u64 = 2;
