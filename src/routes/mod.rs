//! Thin HTTP handlers: they parse, call, and answer. Nothing clinical is decided here.

mod discovery;
mod feedback;
mod health;
mod intake;
mod openapi;
mod questionnaire;
mod services;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

pub use openapi::OPENAPI_YAML;

/// A method a known path does not answer: 405 with `Allow` (an OperationOutcome, as every
/// error).
fn not_allowed(allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .content_type("application/fhir+json")
        .json(crate::error::operation_outcome("not-supported", &format!("this path answers {allow} only")))
}

async fn get_only() -> HttpResponse {
    not_allowed("GET")
}

async fn post_only() -> HttpResponse {
    not_allowed("POST")
}

pub fn configure(config: &mut web::ServiceConfig) {
    let get = |path: &str, route: actix_web::Route| web::resource(path).route(route).default_service(web::to(get_only));
    let post =
        |path: &str, route: actix_web::Route| web::resource(path).route(route).default_service(web::to(post_only));
    config
        .service(get("/health", web::get().to(health::health)))
        .service(get("/ready", web::get().to(health::ready)))
        .service(get("/openapi.yaml", web::get().to(openapi::openapi)))
        .service(get("/cds-services", web::get().to(discovery::discovery)))
        .service(post("/cds-services/{id}", web::post().to(services::invoke)))
        .service(post("/cds-services/{id}/feedback", web::post().to(feedback::receive)))
        .service(get("/cds-services/{id}/feedback/summary", web::get().to(feedback::summary)))
        .service(get("/fhir/Questionnaire/{id}", web::get().to(questionnaire::questionnaire)))
        .service(get("/intake", web::get().to(intake::page_with_slash)))
        .service(get("/intake/", web::get().to(intake::page)))
        .service(get("/intake/api/launch", web::get().to(intake::launch)))
        .service(post("/intake/api/prefill", web::post().to(intake::prefill_answers)))
        .service(post("/intake/api/cards", web::post().to(intake::cards)))
        .service(get("/intake/{path:.*}", web::get().to(intake::asset)));
}
