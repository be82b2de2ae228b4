//! Reading a request body within its limits: its size (413), a total deadline and an idle
//! deadline (408, the connection closed), and its JSON nesting (400).
//!
//! actix-web times out only the request head (`client_request_timeout`); a body trickled one
//! byte at a time, or declared larger than it will ever be, would otherwise hold its connection
//! (and a file descriptor) for as long as the client likes. A `Content-Length` over the limit is
//! refused before a byte is read.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::limits::json_depth_exceeds;

/// How a request body may be read.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// More bytes than this is a 413.
    pub max_bytes: usize,
    /// The whole body must have arrived within this time of the handler starting to read it.
    pub total: Duration,
    /// No more than this may pass between two chunks of the body.
    pub idle: Duration,
    /// JSON nested deeper than this is a 400.
    pub max_json_depth: usize,
}

/// Reads a JSON body within `limits`: over `max_bytes` is a 413, slower than the deadlines a
/// 408, nested deeper than `max_json_depth` a 400 (each with an OperationOutcome).
pub async fn read_json_body(
    request: &HttpRequest,
    payload: web::Payload,
    limits: &BodyLimits,
) -> Result<web::BytesMut, ApiError> {
    let body = read_body(request, payload, limits).await?;
    if json_depth_exceeds(&body, limits.max_json_depth) {
        return Err(ApiError::BadRequest(format!(
            "the request body nests arrays and objects deeper than {} levels",
            limits.max_json_depth
        )));
    }
    Ok(body)
}

/// The `Content-Length` the client declared, when it declared one.
fn declared_length(request: &HttpRequest) -> Option<u64> {
    request.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limits: &BodyLimits,
) -> Result<web::BytesMut, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit: limits.max_bytes };
    if declared_length(request).is_some_and(|length| length > limits.max_bytes as u64) {
        return Err(too_large);
    }
    let deadline = Instant::now() + limits.total;
    let mut body = web::BytesMut::new();
    loop {
        let idle_deadline = (Instant::now() + limits.idle).min(deadline);
        let chunk = match tokio::time::timeout_at(idle_deadline, payload.next()).await {
            Err(_) => return Err(ApiError::RequestTimeout { seconds: limits.total.as_secs().max(1) }),
            Ok(None) => break,
            Ok(Some(chunk)) => chunk.map_err(|_| ApiError::BadRequest("the request body could not be read".into()))?,
        };
        if body.len() + chunk.len() > limits.max_bytes {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
