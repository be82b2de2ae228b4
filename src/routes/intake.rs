//! `/intake/`: the SMART on FHIR intake app (`crate::intake`). Its files, served with the app's
//! Content-Security-Policy; what an EHR launch needs (the client id for the EHR, the scopes);
//! and the two calls the app makes with its SMART token: what the record already answers
//! (`prefill`), and the cards the service gives with the response just written (`cards`, a
//! patient-view evaluation, audited as one). The token is sent on to the EHR's FHIR server only,
//! which must be registered in `intake.clients`; it is never logged or kept.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::body::read_json_body;
use crate::catalogue::ServiceKind;
use crate::error::ApiError;
use crate::fhir::interpret;
use crate::fhir::page::is_safe_id;
use crate::intake::assets;
use crate::knee::prefill::{PrefilledAnswer, prefill};
use crate::protocol::card::CdsResponse;
use crate::protocol::request::{AccessToken, HookRequest};
use crate::startup::AppState;

/// `GET /intake/{path}`: a page, script, style or image of the app.
pub async fn asset(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let Some(asset) = assets::find(path.as_str()) else {
        return Err(ApiError::NotFound("no such file in the intake app".into()));
    };
    let cache = if asset.library { "public, max-age=3600" } else { "no-cache" };
    Ok(HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, state.intake.content_security_policy.as_str()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // The redirect back from the EHR carries the authorization code in the URL.
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, cache))
        .body(asset.body))
}

/// `GET /intake/`: the app's page (the redirect URI).
pub async fn page(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    asset(state, web::Path::from(String::new())).await
}

/// `GET /intake` redirects to `/intake/`, where the page's relative links resolve.
pub async fn page_with_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/intake/")).finish()
}

#[derive(Deserialize)]
pub struct LaunchQuery {
    iss: String,
}

fn not_registered() -> ApiError {
    ApiError::Forbidden(
        "this EHR (iss) is not registered for the intake app: its FHIR base URL must be listed in intake.clients"
            .into(),
    )
}

/// `GET /intake/api/launch?iss=`: the client id the EHR registered the app under, the scopes to
/// ask for and how long a write may take; 403 for an EHR that is not registered.
pub async fn launch(state: web::Data<AppState>, query: web::Query<LaunchQuery>) -> Result<HttpResponse, ApiError> {
    let client = state.intake.client_for(&query.iss).ok_or_else(not_registered)?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({
        "clientId": client.client_id,
        "scopes": state.intake.scopes,
        "writeTimeoutMs": state.intake.write_timeout_ms,
    })))
}

/// What the app sends: where the record is and the token to read it with.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecordAccess {
    fhir_server: String,
    patient_id: String,
    user_id: String,
    access_token: AccessToken,
    /// `cards` only: the QuestionnaireResponse the app just wrote.
    #[serde(default)]
    questionnaire_response: Option<Value>,
}

/// A `ResourceType/id` reference to the user.
fn is_user_reference(reference: &str) -> bool {
    reference.split_once('/').is_some_and(|(kind, id)| {
        ["Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person"].contains(&kind) && is_safe_id(id)
    })
}

impl RecordAccess {
    async fn read(state: &AppState, http_request: &HttpRequest, payload: web::Payload) -> Result<Self, ApiError> {
        let body = read_json_body(http_request, payload, &state.body).await?;
        let access: RecordAccess = serde_json::from_slice(&body).map_err(|_| {
            ApiError::BadRequest(
                "the body must be {fhirServer, patientId, userId, accessToken[, questionnaireResponse]}".into(),
            )
        })?;
        if state.intake.client_for(&access.fhir_server).is_none() {
            return Err(not_registered());
        }
        if !is_safe_id(&access.patient_id) || !is_user_reference(&access.user_id) {
            return Err(ApiError::BadRequest(
                "patientId must be a FHIR id and userId a reference such as Practitioner/123".into(),
            ));
        }
        Ok(access)
    }

    /// The patient-view hook call this access stands for: the record read from the EHR with the
    /// app's token, and the intake key given (the response just written, or none).
    fn hook_request(self) -> Result<HookRequest, ApiError> {
        let responses: Vec<Value> =
            self.questionnaire_response.into_iter().map(|resource| json!({ "resource": resource })).collect();
        let request = json!({
            "hook": ServiceKind::PatientView.hook(),
            "hookInstance": uuid::Uuid::new_v4().to_string(),
            "fhirServer": self.fhir_server,
            "fhirAuthorization": { "access_token": self.access_token.expose(), "token_type": "Bearer" },
            "context": { "userId": self.user_id, "patientId": self.patient_id },
            "prefetch": {
                "questionnaireResponses": { "resourceType": "Bundle", "type": "searchset", "entry": responses }
            },
        });
        let body = serde_json::to_vec(&request).map_err(|error| ApiError::Internal(error.to_string()))?;
        HookRequest::parse(&body)
    }
}

/// `POST /intake/api/prefill`: the questions the record answers, each with the records that say
/// so, and the parts of the record that could not be read.
pub async fn prefill_answers(
    state: web::Data<AppState>,
    http_request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request = RecordAccess::read(&state, &http_request, payload).await?.hook_request()?;
    let service = ServiceKind::PatientView;
    let record = super::services::record_for(&state, service, &request).await?;
    if let Some(key) = record.missing_required() {
        return Err(ApiError::PreconditionFailed(format!(
            "the EHR's FHIR server did not give the {} with this token",
            key.prefetch_key()
        )));
    }
    let knowledge = &state.knowledge;
    let patient_id = request.context.patient_id.as_str();
    let now = OffsetDateTime::now_utc();
    let facts = interpret::record_facts(&record, patient_id, &knowledge.terminology, &knowledge.thresholds, now);
    let answers: Vec<Value> = prefill(&facts)
        .into_iter()
        .map(|prefilled| {
            let answer = match prefilled.answer {
                PrefilledAnswer::Yes => json!({ "valueBoolean": true }),
                PrefilledAnswer::Side(side) => {
                    json!({ "valueCoding": { "system": "https://popliteal.dev/CodeSystem/side", "code": side.code() } })
                }
            };
            let from: Vec<Value> = prefilled
                .evidence
                .iter()
                .map(|e| json!({ "reference": e.reference, "description": e.description, "date": e.date.map(|d| d.to_string()) }))
                .collect();
            json!({ "linkId": prefilled.question.link_id(), "answer": answer, "from": from, "verify": prefilled.verify })
        })
        .collect();
    let unread: Vec<&str> = record.incomplete_keys().map(|(key, _)| key.prefetch_key()).collect();
    tracing::info!(answers = answers.len(), unread = ?unread, "intake prefilled");
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({
        "answers": answers,
        "unread": unread,
    })))
}

/// `POST /intake/api/cards`: the cards of the patient-view service for the record and the
/// QuestionnaireResponse the app just wrote (the same evaluation as a hook call, audited as one).
pub async fn cards(
    state: web::Data<AppState>,
    http_request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let invoked_at = OffsetDateTime::now_utc();
    let access = RecordAccess::read(&state, &http_request, payload).await?;
    let is_response = access
        .questionnaire_response
        .as_ref()
        .is_some_and(|resource| resource["resourceType"] == "QuestionnaireResponse");
    if !is_response {
        return Err(ApiError::BadRequest(
            "questionnaireResponse must be the QuestionnaireResponse just written".into(),
        ));
    }
    let request = access.hook_request()?;
    let outcome = super::services::answer(&state, ServiceKind::PatientView, &request, invoked_at, started).await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(CdsResponse { cards: outcome.cards }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fhir_ids_and_user_references_are_accepted() {
        assert!(is_safe_id("abc-1.2"));
        assert!(!is_safe_id("a/b") && !is_safe_id("") && !is_safe_id(&"x".repeat(65)));
        assert!(is_user_reference("Practitioner/dr-1") && is_user_reference("Patient/p1"));
        assert!(!is_user_reference("Organization/o1") && !is_user_reference("Practitioner/a b"));
    }
}
