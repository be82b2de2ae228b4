//! The error policy, in one place.
//!
//! Every non-2xx answer is a FHIR OperationOutcome. Client errors (400, 404, 412, 413) say what
//! is wrong in terms of the protocol (a field name, a prefetch key), never by echoing what was
//! sent, so no patient data or token can travel back in an error. A refused token (401) gets one
//! fixed answer whatever check failed; the log says which. Too many requests (429) say when to
//! come back (`Retry-After`). A database that cannot be reached or written for now is a 503 with
//! `Retry-After`: its detail is logged, the answer says only to retry (feedback is stored once
//! however often it is sent, so a retry is always safe). A server error (500) logs its detail and
//! answers a fixed text. No handler panics on input. Errors produced outside our handlers (a
//! refused CORS preflight) are turned into OperationOutcomes by
//! `middleware::errors_as_operation_outcomes`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, a missing or wrong field, a hook that does not match the service.
    #[error("{0}")]
    BadRequest(String),
    /// No such service or resource.
    #[error("{0}")]
    NotFound(String),
    /// A required prefetch key is absent or failed, and cannot be fetched.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The caller may not do this (an intake launch from an EHR that is not registered).
    #[error("{0}")]
    Forbidden(String),
    /// No valid CDS Hooks bearer JWT. One fixed text, whatever check failed.
    #[error("Authentication failed: a valid CDS Hooks bearer JWT from a trusted EHR is required.")]
    Unauthorized,
    /// The body is larger than the configured limit.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body did not arrive within the body deadlines; the connection is closed.
    #[error("the request body did not arrive within {seconds} s (or stalled); the connection is closed")]
    RequestTimeout { seconds: u64 },
    /// The request's headers are larger than the configured limit.
    #[error("the request headers are larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    /// The client sent more requests than its rate allows.
    #[error("too many requests; retry after {retry_after_seconds} s")]
    TooManyRequests { retry_after_seconds: u64 },
    /// A failure of ours. The detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
    /// The database is unreachable, locked or refuses writes for now. The detail is logged,
    /// never sent.
    #[error("service unavailable")]
    Unavailable(String),
}

/// Seconds a client is asked to wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 5;

impl ApiError {
    fn issue_code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid",
            ApiError::NotFound(_) => "not-found",
            ApiError::PreconditionFailed(_) => "required",
            ApiError::Unauthorized => "login",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::PayloadTooLarge { .. } | ApiError::HeadersTooLarge { .. } => "too-costly",
            ApiError::RequestTimeout { .. } => "timeout",
            ApiError::TooManyRequests { .. } => "throttled",
            ApiError::Internal(_) => "exception",
            ApiError::Unavailable(_) => "transient",
        }
    }

    /// The text the client sees.
    fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "The service failed to process the request.".to_owned(),
            ApiError::Unavailable(_) => {
                "The service's database is unavailable for now; retry later (a retry is safe).".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// An OperationOutcome with one error issue.
pub fn operation_outcome(code: &str, diagnostics: &str) -> serde_json::Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics }]
    })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Internal(detail) => tracing::error!(error.detail = %detail, "request failed"),
            ApiError::Unavailable(detail) => {
                tracing::warn!(error.detail = %detail, "database unavailable");
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string()));
            }
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::TooManyRequests { retry_after_seconds } => {
                response.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
            }
            // The rest of a body that is too slow or too large is not worth waiting for.
            ApiError::RequestTimeout { .. } | ApiError::PayloadTooLarge { .. } | ApiError::HeadersTooLarge { .. } => {
                response.force_close();
            }
            _ => {}
        }
        response
            .content_type("application/fhir+json")
            .json(operation_outcome(self.issue_code(), &self.public_message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn an_internal_error_never_sends_its_detail() {
        let response = ApiError::Internal("db password=secret".into()).error_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().try_into_bytes().expect("a fixed body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("OperationOutcome"));
        assert!(!text.contains("secret"));
    }

    #[test]
    fn an_unavailable_database_is_a_503_that_asks_for_a_retry_without_detail() {
        let response = ApiError::Unavailable("connection refused to db.internal:5432".into()).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
        let body = response.into_body().try_into_bytes().expect("a fixed body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("OperationOutcome") && text.contains("transient"), "{text}");
        assert!(!text.contains("db.internal"), "{text}");
    }
}
