use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::body::read_json_body;
use crate::catalogue::ServiceKind;
use crate::error::ApiError;
use crate::protocol::feedback;
use crate::startup::AppState;
use crate::telemetry::loggable_service_id;

/// The summary's window when `from` is not given.
const DEFAULT_WINDOW_DAYS: i64 = 30;
/// The earliest instant RFC 3339 can write.
const EARLIEST: OffsetDateTime = time::macros::datetime!(0000-01-01 0:00 UTC);

fn service(state: &AppState, id: &str) -> Result<ServiceKind, ApiError> {
    state
        .catalogue
        .find(id)
        .ok_or_else(|| ApiError::NotFound("no CDS service with this id; see GET /cds-services".into()))
}

/// `POST /cds-services/{id}/feedback`: stores every item, committed, before answering 200 (with
/// an empty body, as CDS Hooks 2.0 has none). An item sent again is stored once. A database that
/// is down is a 503: nothing is acknowledged that is not stored.
#[tracing::instrument(name = "receive feedback", skip_all, fields(service_id = loggable_service_id(&id)))]
pub async fn receive(
    state: web::Data<AppState>,
    id: web::Path<String>,
    http_request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let service = service(&state, &id)?;
    let body = read_json_body(&http_request, payload, &state.body).await?;
    let items = feedback::parse(&body)?;
    let receipt = state.store.record_feedback(service.id(), &items, OffsetDateTime::now_utc()).await?;
    state.metrics.feedback(service.id(), &items);
    tracing::info!(
        service_id = service.id(),
        items = items.len(),
        stored = receipt.stored,
        duplicates = receipt.duplicates,
        unknown_cards = receipt.unknown_cards,
        "feedback stored"
    );
    Ok(HttpResponse::Ok().finish())
}

#[derive(Deserialize)]
struct Window {
    from: Option<String>,
    to: Option<String>,
}

fn instant(value: Option<&str>, name: &str) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .map(|text| {
            // A `+` in a query string decodes to a space: put it back.
            OffsetDateTime::parse(&text.replace(' ', "+"), &Rfc3339)
                .map_err(|_| ApiError::BadRequest(format!("{name} must be an RFC 3339 date-time with an offset")))
        })
        .transpose()
}

/// `GET /cds-services/{id}/feedback/summary?from=&to=`: cards shown in `[from, to)` (RFC 3339;
/// default the last 30 days; `from` equal to `to` is an empty window, `from` after `to` a 400)
/// by topic and indicator, accepted and overridden, override reasons.
#[tracing::instrument(name = "feedback summary", skip_all, fields(service_id = loggable_service_id(&id)))]
pub async fn summary(
    state: web::Data<AppState>,
    id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let service = service(&state, &id)?;
    let window = web::Query::<Window>::from_query(request.query_string())
        .map_err(|_| ApiError::BadRequest("the query string must be from=...&to=... (RFC 3339)".into()))?;
    let to = instant(window.to.as_deref(), "to")?.unwrap_or_else(OffsetDateTime::now_utc);
    // The default start stays within what RFC 3339 can write (years 0000 to 9999): the summary
    // names its window.
    let from = instant(window.from.as_deref(), "from")?.unwrap_or_else(|| {
        to.checked_sub(Duration::days(DEFAULT_WINDOW_DAYS)).map_or(EARLIEST, |from| from.max(EARLIEST))
    });
    // `[from, to)` with `from` equal to `to` is an empty window: a valid question with zeros for
    // an answer. A window that ends before it starts is a client's mistake (the two swapped).
    if from > to {
        return Err(ApiError::BadRequest("from must not be after to".into()));
    }
    let summary = state.store.summary(service.id(), from, to).await?;
    Ok(HttpResponse::Ok().json(summary))
}
