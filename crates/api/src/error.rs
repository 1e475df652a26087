//! The API's one error type and the one table that maps every failure to an HTTP status and a
//! stable snake_case code. Every error leaves the server as `{"error":{"code","message"}}`,
//! including the ones actix produces itself (bad query, JSON, path, body size, 404, 405).

use actix_web::body::{BoxBody, EitherBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use hlsmark_clock::TimelineError;
use hlsmark_store::{ErrorKind, StoreError};

/// Seconds a client should wait before retrying when the store is unavailable.
pub const RETRY_AFTER_SECS: u32 = 1;

/// An error answer: status, machine-readable code, human message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// The table: store error kind -> status; store error variant -> code.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::from(&e)
    }
}

impl From<&StoreError> for ApiError {
    fn from(e: &StoreError) -> Self {
        let status = match e.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::UnknownStream => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let code = match e.innermost() {
            StoreError::InvalidStream(_) | StoreError::StreamMismatch { .. } => "invalid_stream",
            StoreError::InvalidSeverity(_) => "invalid_severity",
            StoreError::InvalidColor(_) => "invalid_color",
            StoreError::InvalidTags(_) => "invalid_tags",
            StoreError::InvalidFilter { .. } => "invalid_parameter",
            StoreError::BatchTooLarge(_) => "batch_too_large",
            // `innermost` never answers a batch entry; its own error decides the code.
            StoreError::BatchEntry { .. } => "bad_request",
            StoreError::LabelLength(_) => "invalid_label",
            StoreError::InvalidKind(_) => "invalid_kind",
            StoreError::DataTooLarge(_) => "data_too_large",
            StoreError::NegativeDuration(_) => "invalid_duration",
            StoreError::TimeOutOfRange(_) => "time_out_of_range",
            StoreError::InvertedRange { .. } => "invalid_range",
            StoreError::InvalidLimit(_) => "invalid_limit",
            StoreError::InvalidCursor(_) => "invalid_cursor",
            StoreError::UnknownStream(_) => "unknown_stream",
            StoreError::Conflict(_) => "conflict",
            StoreError::Unavailable(_) | StoreError::Timeout(_) => "store_unavailable",
            StoreError::Corrupt { .. } | StoreError::Backend(_) => "store_error",
            // Ingest leases: the API takes none, but a store error is mapped whole.
            StoreError::InvalidLease(_) => "invalid_lease",
            StoreError::Fenced { .. } => "fenced",
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<TimelineError> for ApiError {
    fn from(e: TimelineError) -> Self {
        match e {
            TimelineError::Empty => Self::not_found(
                "unknown_stream",
                "the stream has no timeline yet (no segments were published)",
            ),
            TimelineError::BeforeStart(_)
            | TimelineError::SeqBeforeStart(_)
            | TimelineError::InGap(..) => Self::bad_request("time_out_of_range", e.to_string()),
            TimelineError::Overflow(_) => Self::bad_request("time_out_of_range", e.to_string()),
            TimelineError::OutOfOrder { .. } | TimelineError::ZeroSegment(_) => {
                Self::internal(format!("the stored timeline is inconsistent: {e}"))
            }
        }
    }
}

#[derive(serde::Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}
#[derive(serde::Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

/// The JSON error body.
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::to_string(&Body {
        error: Inner { code, message },
    })
    .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"error"}}"#.to_owned())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut r = HttpResponse::build(self.status);
        r.content_type("application/json")
            .insert_header((header::CACHE_CONTROL, "no-store"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        r.body(error_body(self.code, &self.message))
    }
}

/// The code for a status when actix (not a handler) produced the error.
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        416 => "range_not_satisfiable",
        431 => "request_header_fields_too_large",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "bad_request",
    }
}

/// Safety net for every 4xx/5xx answer that is not JSON yet (actix's own plain-text and empty
/// errors): rewrite it into the JSON error shape, keeping the status and useful headers.
pub fn json_error_net<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let message = match res.response().error() {
        Some(e) => e.to_string(),
        None => match status {
            StatusCode::NOT_FOUND => format!("no route for {}", res.request().path()),
            StatusCode::METHOD_NOT_ALLOWED => format!(
                "method {} is not allowed on {}",
                res.request().method(),
                res.request().path()
            ),
            s => s.canonical_reason().unwrap_or("error").to_owned(),
        },
    };
    let body = error_body(code_for(status), &message);
    let (req, mut resp) = res.into_parts();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    let resp = resp.set_body(body).map_into_boxed_body();
    let res = ServiceResponse::new(req, resp).map_body(|_, b| EitherBody::right(b));
    Ok(ErrorHandlerResponse::Response(res))
}
