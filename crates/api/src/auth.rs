//! Who may write: `Authorization: Bearer <token>` against `--token`, compared in constant time.
//! Without a token every write is refused (403), so a server is read-only until one is set.

use actix_web::HttpRequest;
use actix_web::http::header;

use crate::error::ApiError;
use crate::state::AppState;

/// Checks `Authorization: Bearer <token>` against the configured token.
pub fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(token) = &state.cfg.token else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "writes_disabled",
            "writes are disabled because no token is configured: start the server with --token <secret> or HLSMARK_TOKEN=<secret> and send Authorization: Bearer <secret>",
        ));
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        // The scheme is case-insensitive (RFC 9110 11.1): `bearer` and `BEARER` too.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is wrong",
        )),
        None => Err(ApiError::new(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <token> to write",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
