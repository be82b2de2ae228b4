use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use time::OffsetDateTime;
use tracing_actix_web::RootSpan;

use crate::error::ApiError;
use crate::evaluate::evaluate;
use crate::fhir::fetch::complete_prefetch;
use crate::limits::json_depth_exceeds;
use crate::protocol::card::CdsResponse;
use crate::protocol::request::HookRequest;
use crate::startup::AppState;

/// Reads a body up to `limit` bytes; more is a 413 (with an OperationOutcome).
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::BadRequest("the request body could not be read".into()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `POST /cds-services/{id}`: evaluate a hook call.
#[tracing::instrument(name = "invoke service", skip_all, fields(service_id = %id))]
pub async fn invoke(
    state: web::Data<AppState>,
    id: web::Path<String>,
    payload: web::Payload,
    root_span: RootSpan,
) -> Result<HttpResponse, ApiError> {
    let Some(service) = state.catalogue.find(&id) else {
        return Err(ApiError::NotFound("no CDS service with this id; see GET /cds-services".into()));
    };
    let body = read_body(payload, state.max_body_bytes).await?;
    if json_depth_exceeds(&body, state.max_json_depth) {
        return Err(ApiError::BadRequest(format!(
            "the request body nests arrays and objects deeper than {} levels",
            state.max_json_depth
        )));
    }
    let mut request = HookRequest::parse(&body)?;
    root_span.record("service_id", service.id());
    root_span.record("hook", request.hook.as_str());
    root_span.record("hook_instance", request.hook_instance.as_str());
    let (fetch, unfinished_pages) =
        complete_prefetch(&mut request, state.catalogue.templates(service), &state.http, &state.fetch).await;
    let outcome =
        evaluate(service, &request, &state.knowledge, &state.evaluation, OffsetDateTime::now_utc(), &unfinished_pages)?;
    tracing::info!(
        service_id = service.id(),
        hook_instance = request.hook_instance.as_str(),
        cards = outcome.cards.len(),
        skipped_resources = outcome.skipped_resources,
        unavailable_keys = ?outcome.unavailable_keys,
        fetched_keys = ?fetch.fetched(),
        "evaluated"
    );
    root_span.record("cards", outcome.cards.len());
    Ok(HttpResponse::Ok().json(CdsResponse { cards: outcome.cards }))
}
