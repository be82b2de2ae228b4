use actix_web::{HttpRequest, HttpResponse, web};
use time::OffsetDateTime;
use tracing_actix_web::RootSpan;

use crate::audit::AuditRecord;
use crate::body::read_json_body;
use crate::catalogue::ServiceKind;
use crate::error::ApiError;
use crate::evaluate::{Outcome, evaluate};
use crate::fhir::assembly::assemble;
use crate::fhir::record::PatientRecord;
use crate::protocol::card::CdsResponse;
use crate::protocol::request::HookRequest;
use crate::startup::AppState;
use crate::telemetry::{loggable_hook, loggable_service_id};

/// `POST /cds-services/{id}`: evaluate a hook call. An evaluated call is queued for the audit
/// trail without waiting: the audit store being slow or down never delays nor fails the answer
/// (see `audit`).
#[tracing::instrument(name = "invoke service", skip_all, fields(service_id = loggable_service_id(&id)))]
pub async fn invoke(
    state: web::Data<AppState>,
    id: web::Path<String>,
    http_request: HttpRequest,
    payload: web::Payload,
    root_span: RootSpan,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let invoked_at = OffsetDateTime::now_utc();
    let Some(service) = state.catalogue.find(&id) else {
        return Err(ApiError::NotFound("no CDS service with this id; see GET /cds-services".into()));
    };
    let body = read_json_body(&http_request, payload, &state.body).await?;
    let request = HookRequest::parse(&body)?;
    root_span.record("service_id", service.id());
    root_span.record("hook", loggable_hook(&request.hook));
    root_span.record("hook_instance", request.hook_instance.as_str());
    let outcome = answer(&state, service, &request, invoked_at, started).await?;
    root_span.record("cards", outcome.cards.len());
    Ok(HttpResponse::Ok().json(CdsResponse { cards: outcome.cards }))
}

/// The record of a hook call: the request checked against its service before anything is read
/// from the EHR, then assembled from its prefetch and the EHR's FHIR server.
pub(super) async fn record_for(
    state: &AppState,
    service: ServiceKind,
    request: &HookRequest,
) -> Result<PatientRecord, ApiError> {
    request.check_for(service)?;
    Ok(assemble(request, state.catalogue.templates(service), &state.fhir, &state.metrics).await)
}

/// A checked hook call answered: the request checked against its service before anything is read
/// from the EHR, the record assembled, evaluated, logged (counts only), counted, and queued for
/// the audit trail. Shared by the hook endpoint and the intake app's (`routes::intake`).
pub(super) async fn answer(
    state: &AppState,
    service: ServiceKind,
    request: &HookRequest,
    invoked_at: OffsetDateTime,
    started: std::time::Instant,
) -> Result<Outcome, ApiError> {
    let record = record_for(state, service, request).await?;
    let outcome = evaluate(service, request, &record, &state.knowledge, &state.evaluation, invoked_at)?;
    tracing::info!(
        service_id = service.id(),
        hook_instance = request.hook_instance.as_str(),
        cards = outcome.cards.len(),
        skipped_resources = outcome.skipped_resources,
        incomplete_keys = ?outcome.incomplete_keys,
        provenance = ?outcome.provenance.iter().map(|(key, p)| (key.prefetch_key(), p.code())).collect::<Vec<_>>(),
        "evaluated"
    );
    state.metrics.cards(service.id(), &outcome.cards);
    let patient_hash = state.auditor.patient_hash(&request.context.patient_id);
    state.auditor.submit(AuditRecord::of_call(service, request, &outcome, patient_hash, invoked_at, started.elapsed()));
    Ok(outcome)
}
