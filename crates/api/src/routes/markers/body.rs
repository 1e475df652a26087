//! The body of `POST /markers`, read with two limits: one marker (an object) within
//! `--body-limit`, an array of up to 1,000 within [`BULK_BODY_LIMIT`] (or `--body-limit` when
//! larger); a `Content-Length` beyond both is refused before a byte is read.

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use bytes::Bytes;

use crate::error::ApiError;
use crate::state::AppState;

/// Largest body of an array of markers (`POST /markers` with up to 1,000), unless
/// `--body-limit` is larger: 1,000 markers with labels, tags and a little `data` fit easily.
pub const BULK_BODY_LIMIT: usize = 4 << 20;

/// A body of `POST /markers`: at most `--body-limit` for one marker (an object), at most
/// [`BULK_BODY_LIMIT`] (or `--body-limit` when larger) for an array of up to 1,000.
pub async fn read_body(
    req: &HttpRequest,
    state: &AppState,
    mut payload: web::Payload,
) -> Result<Bytes, ApiError> {
    use futures_util::StreamExt;
    let single = state.cfg.body_limit;
    let bulk = single.max(BULK_BODY_LIMIT);
    let too_large = |limit: usize| {
        ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "request body larger than {limit} bytes (one marker: --body-limit; an array of \
                 markers: {bulk} bytes)"
            ),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > bulk) {
        return Err(too_large(bulk));
    }
    let mut body = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(bulk));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("bad_request", e.to_string()))?;
        if body.len() + chunk.len() > bulk {
            return Err(too_large(bulk));
        }
        body.extend_from_slice(&chunk);
        // One marker may not use the array's allowance.
        if body.len() > single && !is_array(&body) {
            return Err(too_large(single));
        }
    }
    Ok(body.freeze())
}

/// Whether a JSON body is an array (its first non-blank byte is `[`).
pub fn is_array(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}
