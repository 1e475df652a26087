//! `GET /streams`: every stream with its ingest state (starting, live, retrying, failed, stopped,
//! and why), its live edge and retained segments.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use hlsmark_clock::UtcTime;
use serde::Serialize;

use crate::error::ApiError;
use crate::services::streams::{StreamRow, overview};
use crate::state::AppState;

#[derive(Serialize)]
struct Body {
    streams: Vec<StreamRow>,
}

/// `GET /streams`
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let streams = overview(&state, UtcTime::now()).await?;
    let body = serde_json::to_vec(&Body { streams })
        .map_err(|e| ApiError::internal(format!("serializing the streams: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body))
}
