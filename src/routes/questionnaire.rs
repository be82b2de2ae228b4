use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::startup::AppState;

/// `GET /fhir/Questionnaire/posterior-knee-pain`: the intake Questionnaire (FHIR R4).
pub async fn questionnaire(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if id.as_str() != "posterior-knee-pain" {
        return Err(ApiError::NotFound("no such Questionnaire".into()));
    }
    Ok(HttpResponse::Ok().content_type("application/fhir+json").body(state.questionnaire.clone()))
}
