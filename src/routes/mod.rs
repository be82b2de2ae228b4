//! Thin HTTP handlers: they parse, call, and answer. Nothing clinical is decided here.

mod discovery;
mod feedback;
mod health;
mod openapi;
mod questionnaire;
mod services;

use actix_web::web;

pub use openapi::OPENAPI_YAML;
pub use services::read_json_body;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/health", web::get().to(health::health))
        .route("/openapi.yaml", web::get().to(openapi::openapi))
        .route("/cds-services", web::get().to(discovery::discovery))
        .route("/cds-services/{id}", web::post().to(services::invoke))
        .route("/cds-services/{id}/feedback", web::post().to(feedback::receive))
        .route("/cds-services/{id}/feedback/summary", web::get().to(feedback::summary))
        .route("/fhir/Questionnaire/{id}", web::get().to(questionnaire::questionnaire));
}
