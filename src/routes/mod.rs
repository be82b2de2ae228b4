//! Thin HTTP handlers: they parse, call, and answer. Nothing clinical is decided here.

mod discovery;
mod health;
mod questionnaire;
mod services;

use actix_web::web;

pub use services::read_body;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/health", web::get().to(health::health))
        .route("/cds-services", web::get().to(discovery::discovery))
        .route("/cds-services/{id}", web::post().to(services::invoke))
        .route("/fhir/Questionnaire/{id}", web::get().to(questionnaire::questionnaire));
}
