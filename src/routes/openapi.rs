use actix_web::HttpResponse;

/// The OpenAPI 3.1 description of this service, as shipped in `cds-hooks/openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../cds-hooks/openapi.yaml");

/// `GET /openapi.yaml`: the OpenAPI document (open without a token, like `/health`).
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/yaml").body(OPENAPI_YAML)
}
