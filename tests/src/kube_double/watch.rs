//! Watch streams: newline-delimited JSON events until `timeoutSeconds`.
//!
//! A watch replays the event log from the requested resourceVersion (or starts with ADDED
//! events for the current objects when none is given, or `0`), then polls the log. With a
//! label selector, objects that start matching arrive as ADDED and objects that stop
//! matching as DELETED carrying their previous state, as the real watch cache does.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::discovery::ResourceType;
use super::objects::{Event, Selector, State};
use super::status;

/// What one watch request asks for.
pub(crate) struct WatchSpec {
    pub ty: ResourceType,
    pub namespace: Option<String>,
    pub selector: Selector,
    pub from: Option<u64>,
    pub timeout: Duration,
}

/// A response body fed by a channel; ends when the sender is dropped.
pub(crate) struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn line(kind: &str, obj: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": obj}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// How an event looks through this watch's filters, if it is seen at all.
fn translate(spec: &WatchSpec, e: &Event) -> Option<Bytes> {
    if e.key.group != spec.ty.group || e.key.resource != spec.ty.plural {
        return None;
    }
    if spec
        .namespace
        .as_ref()
        .is_some_and(|ns| *ns != e.key.namespace)
    {
        return None;
    }
    let now = spec.selector.matches(&e.obj);
    match e.kind {
        "MODIFIED" => {
            let before = e.old.as_ref().is_some_and(|o| spec.selector.matches(o));
            match (before, now) {
                (true, true) => Some(line("MODIFIED", &e.obj)),
                (false, true) => Some(line("ADDED", &e.obj)),
                (true, false) => {
                    let mut old = e.old.clone().unwrap_or(Value::Null);
                    old["metadata"]["resourceVersion"] = json!(e.rv.to_string());
                    Some(line("DELETED", &old))
                }
                (false, false) => None,
            }
        }
        kind => now.then(|| line(kind, &e.obj)),
    }
}

/// Starts streaming `spec` from `state`; the returned body ends at the timeout.
pub(crate) fn start(state: Arc<Mutex<State>>, spec: WatchSpec) -> ChannelBody {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let deadline = Instant::now() + spec.timeout;
        let (initial, mut cursor) = {
            let st = state.lock().expect("state lock");
            match spec.from.filter(|rv| *rv > 0) {
                Some(rv) => (Vec::new(), rv),
                None => {
                    let initial: Vec<Bytes> = st
                        .matching(&spec.ty, spec.namespace.as_deref(), &spec.selector)
                        .into_iter()
                        .map(|(_, o)| line("ADDED", o))
                        .collect();
                    (initial, st.rv)
                }
            }
        };
        for l in initial {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        loop {
            let lines: Vec<Bytes> = {
                let mut st = state.lock().expect("state lock");
                status::tick(&mut st);
                let lines = st
                    .events
                    .iter()
                    .filter(|e| e.rv > cursor)
                    .filter_map(|e| translate(&spec, e))
                    .collect();
                cursor = st.rv;
                lines
            };
            for l in lines {
                if tx.send(l).await.is_err() {
                    return;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(20))).await;
        }
    });
    ChannelBody(rx)
}
