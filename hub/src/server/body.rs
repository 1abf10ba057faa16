//! Request and reply bodies. A request body is read by the [`Limited`] extractor within its endpoint's size
//! limit and [`BODY_TIMEOUT`]; a reply is whole (the small answers) or a [`ChannelBody`] written while it is
//! read from disk (an agent's history), so that a large reply never sits in memory at once.
//!
//! Why not tower-http's body limit and timeout layers: the limit layer answers 413 in its own words before a
//! handler runs, where the hub answers every refusal as JSON naming the setting to change, and its timeout
//! restarts with each chunk, where [`BODY_TIMEOUT`] bounds the whole body, so a client dripping a byte a
//! minute cannot hold a connection open.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError};
use hyper::body::Frame;
use hyper::header::CONTENT_LENGTH;
use tokio::sync::mpsc;

use super::routes::Refused;
use super::BODY_TIMEOUT;
use crate::reply::Rejection;
use crate::state::HubState;

/// Why a streamed reply stopped before its end; the connection is then cut, so the client sees a truncated
/// reply rather than a well-formed but incomplete one.
#[derive(Debug, thiserror::Error)]
#[error("the reply could not be completed: {0}")]
pub struct StreamError(pub String);

/// A body fed chunk by chunk through a channel by the task that produces it.
#[derive(Debug)]
pub struct ChannelBody {
    chunks: mpsc::Receiver<Result<Bytes, StreamError>>,
}

impl ChannelBody {
    /// A body and the sender that feeds it. The channel holds one chunk: the producer waits for the client,
    /// so memory stays at about one chunk whatever the reply's length.
    pub fn channel() -> (mpsc::Sender<Result<Bytes, StreamError>>, ChannelBody) {
        let (sender, chunks) = mpsc::channel(1);
        (sender, ChannelBody { chunks })
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|result| result.map(Frame::data)))
    }
}

/// How large one endpoint's request body may be, and how a refusal names the limit.
pub trait BodyLimit {
    /// What the body is, for the refusal ("heartbeat").
    const WHAT: &'static str;
    /// Where the limit is set, for the refusal ("max_body").
    const SETTING: &'static str;
    fn bytes(state: &HubState) -> usize;
}

/// A heartbeat: at most `max_body`.
pub struct HeartbeatLimit;
impl BodyLimit for HeartbeatLimit {
    const WHAT: &'static str = "heartbeat";
    const SETTING: &'static str = "max_body";
    fn bytes(state: &HubState) -> usize {
        state.config.max_body
    }
}

/// An enrollment: a fixed limit, small, since anyone may send one.
pub struct EnrollLimit;
impl BodyLimit for EnrollLimit {
    const WHAT: &'static str = "enrollment";
    const SETTING: &'static str = "a fixed limit";
    fn bytes(_: &HubState) -> usize {
        crate::enroll::MAX_ENROLL_BODY
    }
}

/// A ping: `{"agent_id": ...}`, a fixed limit.
pub struct PingLimit;
impl BodyLimit for PingLimit {
    const WHAT: &'static str = "ping";
    const SETTING: &'static str = "a fixed limit";
    fn bytes(_: &HubState) -> usize {
        outpost_proto::wire::MAX_PING_BYTES
    }
}

/// An admin request: at most `max_body`.
pub struct AdminLimit;
impl BodyLimit for AdminLimit {
    const WHAT: &'static str = "admin request";
    const SETTING: &'static str = "max_body";
    fn bytes(state: &HubState) -> usize {
        state.config.max_body
    }
}

/// A request body of at most `L::bytes`: refused from its `Content-Length` when that is too big, before a
/// byte of it is read, and otherwise cut off as soon as the bytes read pass the limit (chunked bodies have no
/// length up front); the whole body must arrive within [`BODY_TIMEOUT`].
pub struct Limited<L> {
    pub bytes: Bytes,
    limit: PhantomData<L>,
}

impl<L: BodyLimit> FromRequest<Arc<HubState>> for Limited<L> {
    type Rejection = Refused;

    async fn from_request(request: Request, state: &Arc<HubState>) -> Result<Self, Refused> {
        let limit = L::bytes(state);
        let too_large = || {
            Rejection::new(
                413,
                "body_too_large",
                format!(
                    "the {} body is over the hub's limit of {limit} bytes ({}); send fewer sources or shorter errors",
                    L::WHAT,
                    L::SETTING
                ),
            )
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large().into());
        }
        let body = http_body_util::Limited::new(request.into_body(), limit);
        let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
            Err(_) => Err(Rejection::new(
                408,
                "body_timeout",
                format!(
                    "the {} body did not arrive within {}s",
                    L::WHAT,
                    BODY_TIMEOUT.as_secs()
                ),
            )),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Ok(Err(e)) => Err(Rejection::new(
                400,
                "bad_body",
                format!("cannot read the {} body: {e}", L::WHAT),
            )),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }?;
        Ok(Limited {
            bytes,
            limit: PhantomData,
        })
    }
}
