//! Server-Sent Events: the framing (`event:`/`id:`/`data:`, `retry:`), keep-alive comments, the
//! end at shutdown, and the bookkeeping of an open feed (its [`Permit`] of the connection limit and
//! the `hlsmark_sse_clients` gauge). What the events say is the route's business
//! (`routes::markers::live` turns markers into events).
//!
//! A client that goes away is noticed at once, not at the next keep-alive: the server disallows
//! HTTP/1 half-closed connections (`server.rs`), so actix-http ends the connection as soon as it
//! reads EOF from the client and drops the answer's body, which drops the permit and the
//! subscription. Over HTTP/2 the TCP connection (and its fd) goes at once as well; the stream's
//! body is dropped at its next write (the next event or keep-alive).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::header;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use crate::limits::Permit;
use crate::metrics::Metrics;

/// What a browser's EventSource waits before reconnecting (ms).
const RETRY_MS: u32 = 2000;
/// Shortest keep-alive interval accepted (tests use short ones).
const MIN_KEEPALIVE: Duration = Duration::from_millis(100);

/// One `event:` with an optional `id:` and one line of `data:` (JSON has no raw newlines).
pub fn event(name: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(name.len() + data.len() + 32);
    s.push_str("event: ");
    s.push_str(name);
    s.push('\n');
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(id);
        s.push('\n');
    }
    for line in data.split('\n') {
        s.push_str("data: ");
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    Bytes::from(s)
}

/// Headers of an event stream (HEAD answers get them too, without opening a feed).
pub fn head() -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::Ok();
    b.content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx: do not buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"));
    b
}

/// Counts the feed in `hlsmark_sse_clients` while it is open.
struct Gauge(Arc<Metrics>);

impl Gauge {
    fn open(m: Arc<Metrics>) -> Self {
        m.sse_clients.fetch_add(1, Ordering::Relaxed);
        Self(m)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What an open feed holds until actix drops its body.
struct Open<E> {
    events: Pin<Box<E>>,
    tick: tokio::time::Interval,
    shutdown: tokio::sync::watch::Receiver<bool>,
    _permit: Permit,
    _gauge: Gauge,
}

/// An event stream answer: `retry:` and a `: connected` comment first, then `events` as they
/// come, a `: keep-alive` comment after every `keepalive` without one, and the end when
/// `events` ends or `shutdown` turns true.
pub fn respond<E>(
    events: E,
    keepalive: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
    permit: Permit,
    metrics: Arc<Metrics>,
) -> HttpResponse
where
    E: Stream<Item = Bytes> + 'static,
{
    let hello = Bytes::from(format!("retry: {RETRY_MS}\n: connected\n\n"));
    let mut tick = tokio::time::interval(keepalive.max(MIN_KEEPALIVE));
    tick.reset();
    let open = Open {
        events: Box::pin(events),
        tick,
        shutdown,
        _permit: permit,
        _gauge: Gauge::open(metrics),
    };
    let body = futures_util::stream::unfold(open, |mut s| async move {
        if *s.shutdown.borrow() {
            return None;
        }
        let out = tokio::select! {
            _ = s.shutdown.changed() => return None,
            _ = s.tick.tick() => Bytes::from_static(b": keep-alive\n\n"),
            ev = s.events.next() => {
                // An event is as good as a keep-alive.
                s.tick.reset();
                ev?
            }
        };
        Some((Ok::<_, actix_web::Error>(out), s))
    });
    let body =
        futures_util::stream::once(async move { Ok::<_, actix_web::Error>(hello) }).chain(body);
    head().streaming(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed() {
        assert_eq!(
            &event("marker", Some("42"), "{\"a\":1}")[..],
            b"event: marker\nid: 42\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(
            &event("lagged", None, "a\nb")[..],
            b"event: lagged\ndata: a\ndata: b\n\n"
        );
    }
}
