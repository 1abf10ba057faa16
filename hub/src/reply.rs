//! What the hub answers: [`Reply`] for a request it accepted, [`Rejection`] for one it refused.
//!
//! Handlers return these plain values and the server turns them into HTTP, so the decisions stay testable
//! without a socket. A rejection always carries a machine-readable `reason` and a sentence for a human, in
//! the body (`{"error": reason, "message": ...}`) and in the hub's log; only successful heartbeat replies
//! are signed, because only they carry something the agent acts on (the assignment).

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
        }
    }

    /// The same refusal, telling the client to try again in `secs` seconds.
    pub fn retry_after(self, secs: u64) -> Rejection {
        Rejection {
            retry_after: Some(secs),
            ..self
        }
    }

    /// A fault on the hub's side; the message goes to the log, the client learns only that it should retry.
    pub fn internal(message: impl Into<String>) -> Rejection {
        Rejection::new(500, "internal", message)
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> Vec<u8> {
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
