//! Reply bodies: whole ones ([`Full`]) for the small answers, and [`ChannelBody`] for replies written while
//! they are read from disk (an agent's history), so that a large reply never sits in memory at once.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Frame;
use tokio::sync::mpsc;

/// What the hub's service answers with.
pub type ReplyBody = Either<Full<Bytes>, ChannelBody>;

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

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> ReplyBody {
    Either::Left(Full::new(bytes.into()))
}
