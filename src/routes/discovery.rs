use actix_web::{HttpResponse, web};

use crate::startup::AppState;

/// `GET /cds-services`: the catalogue, as shipped in `cds-hooks/services.json`.
pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.catalogue.discovery.clone())
}
