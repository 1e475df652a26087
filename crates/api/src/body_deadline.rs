//! A deadline on reading request bodies. actix's `client_request_timeout` covers only the head:
//! a client that announces `Content-Length: 100` and sends 9 bytes would otherwise hold its
//! connection (and a graceful shutdown) forever. Every request with a body gets its payload
//! wrapped: when the whole body has not arrived within `ApiConfig::body_timeout`, or the server
//! starts shutting down while it is still being read, the read fails and the answer becomes a
//! JSON 408 (or 503 at shutdown) that closes the connection.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage as _;
use actix_web::HttpResponse;
use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header;
use bytes::Bytes;
use futures_util::Stream;

use crate::error::ApiError;

/// Why a body read was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    No,
    Deadline,
    Shutdown,
}

/// Set on a request whose body is being read under the deadline.
pub struct Guard {
    cut: Rc<Cell<Cut>>,
    /// The connection's payload once the read was cut. It must stay alive until the answer is
    /// written: actix-http closes a connection whose payload is unread, but it drains (waits for)
    /// a chunked one that was dropped, which is exactly what a stalled client never finishes.
    kept: Rc<RefCell<Option<Payload>>>,
    timeout: Duration,
}

/// Wraps the payload of `req` (if it has one) in the deadline.
pub fn arm(
    req: &mut ServiceRequest,
    timeout: Duration,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Option<Guard> {
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        return None;
    }
    let cut = Rc::new(Cell::new(Cut::No));
    let kept = Rc::new(RefCell::new(None));
    let mut shutdown = shutdown.clone();
    let stream = Deadline {
        inner: payload,
        sleep: Box::pin(tokio::time::sleep(timeout)),
        stop: Box::pin(async move {
            // An error means the server side is gone: that is a shutdown too.
            let _ = shutdown.wait_for(|s| *s).await;
        }),
        cut: cut.clone(),
        kept: kept.clone(),
        done: false,
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(stream),
    });
    Some(Guard { cut, kept, timeout })
}

/// Replaces the answer to a request whose body read was cut short (the handler saw a payload
/// error, whatever it made of it) with the JSON error that says why.
pub fn answer<B>(res: ServiceResponse<B>, guard: Option<Guard>) -> ServiceResponse<EitherBody<B>> {
    let Some(guard) = guard else {
        return res.map_into_left_body();
    };
    let err = match guard.cut.get() {
        Cut::No => return res.map_into_left_body(),
        Cut::Deadline => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                guard.timeout.as_secs_f64()
            ),
        ),
        Cut::Shutdown => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; send the request again",
        ),
    };
    let payload = guard.kept.borrow_mut().take();
    let mut resp = HttpResponse::build(err.status)
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(BoxBody::new(Holding::new(
            crate::error::error_body(err.code, &err.message),
            payload,
        )));
    if err.status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from(crate::error::RETRY_AFTER_SECS),
        );
    }
    resp.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    let (req, _) = res.into_parts();
    ServiceResponse::new(req, resp).map_into_right_body()
}

/// A response body that keeps the request's payload alive until it has been written (see
/// [`Guard::kept`]).
struct Holding {
    len: u64,
    body: Option<Bytes>,
    _payload: Option<Payload>,
}

impl Holding {
    fn new(body: String, payload: Option<Payload>) -> Self {
        Self {
            len: body.len() as u64,
            body: Some(Bytes::from(body)),
            _payload: payload,
        }
    }
}

impl MessageBody for Holding {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Poll::Ready(self.get_mut().body.take().map(Ok))
    }
}

struct Deadline {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    stop: Pin<Box<dyn Future<Output = ()>>>,
    cut: Rc<Cell<Cut>>,
    kept: Rc<RefCell<Option<Payload>>>,
    done: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            this.done = item.is_none();
            return Poll::Ready(item);
        }
        let cut = if this.stop.as_mut().poll(cx).is_ready() {
            Cut::Shutdown
        } else if this.sleep.as_mut().poll(cx).is_ready() {
            Cut::Deadline
        } else {
            return Poll::Pending;
        };
        this.cut.set(cut);
        this.done = true;
        *this.kept.borrow_mut() = Some(std::mem::replace(&mut this.inner, Payload::None));
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "request body cut short",
        )))))
    }
}
