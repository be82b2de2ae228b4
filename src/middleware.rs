//! What every request passes through before a handler (applied in `startup.rs`, outermost
//! first): the tracing span, [`request_metrics`], [`errors_as_operation_outcomes`], CORS
//! (`crate::cors`: allowed origins, `Authorization` and `Content-Type`, preflights answered), then
//! [`guard`].

use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpResponse, web};
use tracing_actix_web::RootSpan;

use crate::cors::ORIGIN_NOT_ALLOWED;
use crate::error::{ApiError, operation_outcome};
use crate::startup::AppState;

/// Probes of the platform (liveness, readiness): neither authenticated nor rate limited.
fn is_probe(path: &str) -> bool {
    path == "/health" || path == "/ready"
}

/// Paths open without a CDS Hooks token: the probes, the OpenAPI document (public: it describes
/// the API, not a patient), the intake Questionnaire (public content that the `intake-missing`
/// card links to, opened by a clinician's browser that has no EHR token), and the intake app,
/// whose record calls carry the app's SMART token instead, used only at a registered EHR
/// (`routes::intake`). All but the probes are rate limited by address.
fn is_open(method: &actix_web::http::Method, path: &str) -> bool {
    is_probe(path)
        || path == "/intake"
        || path.starts_with("/intake/")
        || (method == actix_web::http::Method::GET
            && (path == "/openapi.yaml" || path.starts_with("/fhir/Questionnaire/")))
}

/// The size of the request's headers as sent (`name: value\r\n` each).
fn header_bytes(headers: &header::HeaderMap) -> usize {
    headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum()
}

fn too_many(wait: Duration) -> ApiError {
    ApiError::TooManyRequests { retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64 }
}

/// Authentication (when `auth.mode = "jwt"`), then the per-client rate limit: per `iss` once
/// authenticated, else per IP address. A refused token is a 401 (or a 429 when that address
/// keeps sending refused tokens); `/health` and `/ready` are neither authenticated nor limited. The verified
/// client is left in the request's extensions as an `auth::AuthenticatedClient`.
pub async fn guard<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    if header_bytes(req.headers()) > state.max_header_bytes {
        let error = ApiError::HeadersTooLarge { limit: state.max_header_bytes };
        return Ok(req.error_response(error).map_into_right_body());
    }
    let path = req.path().to_owned();
    if is_probe(&path) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let address = req.peer_addr().map_or_else(|| "unknown".to_owned(), |peer| peer.ip().to_string());
    let by_address = format!("ip {address}");
    let client = match &state.authenticator {
        Some(authenticator) if !is_open(req.method(), &path) => {
            let authorization = req.headers().get(header::AUTHORIZATION).map(|value| value.as_bytes().to_vec());
            match authenticator.authenticate(authorization.as_deref(), &path).await {
                Some(client) => {
                    if let Some(span) = req.extensions().get::<RootSpan>() {
                        span.record("client_iss", client.iss.as_str());
                    }
                    let key = format!("iss {}", client.iss);
                    req.extensions_mut().insert(client);
                    key
                }
                None => {
                    let error = match state.rate_limiter.check(&by_address, Instant::now()) {
                        Ok(()) => ApiError::Unauthorized,
                        Err(wait) => too_many(wait),
                    };
                    return Ok(req.error_response(error).map_into_right_body());
                }
            }
        }
        _ => by_address,
    };
    if let Err(wait) = state.rate_limiter.check(&client, Instant::now()) {
        tracing::warn!(%client, "rate limit exceeded");
        return Ok(req.error_response(too_many(wait)).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Counts every answer and its latency by service (a catalogue id, else `none`), route pattern
/// and status, once the error policy has made its final status.
pub async fn request_metrics<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let result = next.call(req).await;
    if let Some(state) = state {
        let (service, route, status) = match &result {
            Ok(response) => {
                let request = response.request();
                let service = request.match_info().get("id").and_then(|id| state.catalogue.find(id)).map(|s| s.id());
                let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
                (service.unwrap_or("none"), route, response.status())
            }
            Err(error) => ("none", "unmatched".to_owned(), error.as_response_error().status_code()),
        };
        state.metrics.request(service, route, status, started.elapsed());
    }
    result
}

fn issue_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "login",
        403 => "forbidden",
        404 => "not-found",
        405 => "not-supported",
        408 => "timeout",
        413 | 431 => "too-costly",
        429 => "throttled",
        400..=499 => "invalid",
        _ => "exception",
    }
}

fn is_fhir(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/fhir+json"))
}

fn outcome_for(status: StatusCode) -> HttpResponse {
    outcome_saying(status, status.canonical_reason().unwrap_or("error"))
}

fn outcome_saying(status: StatusCode, diagnostics: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/fhir+json")
        .json(operation_outcome(issue_code(status), diagnostics))
}

/// Whether the request comes from a browser origin the CORS settings do not allow (so a 400
/// without an OperationOutcome is the CORS middleware's refusal).
fn from_refused_origin(req: &ServiceRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return false;
    };
    req.app_data::<web::Data<AppState>>().is_some_and(|state| !state.origins.allows(origin.as_bytes()))
}

/// The error policy's safety net: an error answer that is not already an OperationOutcome (a
/// refused CORS preflight or call, a framework error) becomes one, with the same status and the
/// CORS and `Allow` headers kept. A refused origin is said so, without echoing it.
pub async fn errors_as_operation_outcomes<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let refused_origin = from_refused_origin(&req);
    let response = match next.call(req).await {
        Ok(response) => response,
        Err(error) => {
            let status = error.as_response_error().status_code();
            return Err(actix_web::error::InternalError::from_response(error, outcome_for(status)).into());
        }
    };
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_fhir(response.headers()) {
        return Ok(response.map_into_left_body());
    }
    let (request, original) = response.into_parts();
    let mut replacement = if refused_origin && status == StatusCode::BAD_REQUEST {
        outcome_saying(status, ORIGIN_NOT_ALLOWED)
    } else {
        outcome_for(status)
    };
    for (name, value) in original.headers() {
        if name.as_str().starts_with("access-control-") || name == header::VARY || name == header::ALLOW {
            replacement.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(request, replacement).map_into_right_body())
}
