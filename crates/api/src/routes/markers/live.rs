//! `GET /markers/live`: the stream's new markers as server-sent events, filtered like
//! `GET /markers`; framing, keep-alive and the end at shutdown are `crate::sse`'s.

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use hlsmark_store::{MarkerFilter, StreamName};
use serde::Deserialize;

use crate::error::ApiError;
use crate::routes::params::marker_filter;
use crate::services::clocks::Clocks;
use crate::state::AppState;
use crate::views::MarkerView;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    stream: Option<String>,
    kind: Option<String>,
    label: Option<String>,
    tag: Option<String>,
    severity: Option<String>,
}

/// `GET /markers/live?stream=&kind=&label=&tag=&severity=`: `event: marker` per new marker of
/// the stream that passes the filters of `GET /markers` (`event: lagged` when this client missed
/// some), framed, kept alive and ended at shutdown by [`crate::sse`];
/// at most `--sse-max-per-ip` / `--sse-max-clients` feeds (503 `too_many_connections` beyond,
/// and the connection is closed).
pub async fn live(
    req: HttpRequest,
    state: web::Data<AppState>,
    limits: web::Data<crate::limits::Limits>,
    query: web::Query<LiveQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = state.stream(query.stream.as_deref())?;
    let filter = marker_filter(
        query.kind.as_deref(),
        query.label.as_deref(),
        query.tag.as_deref(),
        query.severity.as_deref(),
    )?;
    // Like /markers and /timeline: a stream without a timeline is unknown (a known stream with
    // no markers yet gets the feed). The configured stream is known before its first segment:
    // the page opens this feed once at load, and a browser's EventSource never retries a 404,
    // so a page opened while the generator starts would otherwise never get live markers.
    if stream != state.cfg.default_stream && state.view(&stream).await?.timeline.is_empty() {
        return Err(ApiError::not_found(
            "unknown_stream",
            format!("stream {stream:?} has no timeline yet"),
        ));
    }
    if req.method() == actix_web::http::Method::HEAD {
        // The feed never ends: a HEAD answer must not wait for it.
        return Ok(crate::sse::head().finish());
    }
    let permit = match limits.sse.acquire(req.peer_addr().map(|a| a.ip())) {
        Ok(p) => p,
        Err(e) => {
            // Closed after the answer: a client retrying in a loop keeps no descriptor here.
            let mut res = actix_web::ResponseError::error_response(&e);
            res.head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            return Ok(res);
        }
    };
    let rx = state.track(state.store.subscribe_markers().await)?;
    let events = marker_events(state.clone(), stream, filter, rx);
    Ok(crate::sse::respond(
        events,
        state.cfg.sse_keepalive,
        state.shutdown.clone(),
        permit,
        state.metrics.clone(),
    ))
}

/// The stream's new markers that pass `filter` as `event: marker` (and `event: lagged
/// {"missed":n}`), until the feed closes.
fn marker_events(
    state: web::Data<AppState>,
    stream: StreamName,
    filter: MarkerFilter,
    rx: hlsmark_store::MarkerFeed,
) -> impl futures_util::Stream<Item = Bytes> {
    let init = (state, (stream, filter), rx);
    futures_util::stream::unfold(init, |(state, sel, mut rx)| async move {
        let (stream, filter) = &sel;
        loop {
            match rx.recv().await {
                Ok(m) if m.stream == *stream && filter.matches(&m) => {
                    let Ok((view, index)) = state.clocks(stream).await else {
                        continue;
                    };
                    let clocks = Clocks::new(&view.timeline, &index);
                    let Ok(v) = MarkerView::new(&m, &clocks, None) else {
                        continue;
                    };
                    let Ok(json) = serde_json::to_string(&v) else {
                        continue;
                    };
                    let ev = crate::sse::event("marker", Some(&m.id.to_string()), &json);
                    return Some((ev, (state, sel, rx)));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let ev = crate::sse::event("lagged", None, &format!("{{\"missed\":{n}}}"));
                    return Some((ev, (state, sel, rx)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
