use crate::support::{Backend, spawn_app, spawn_app_with, unreachable_database_url};

#[tokio::test]
async fn health_answers_200_while_the_process_runs() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn ready_answers_200_when_the_catalogue_is_loaded_and_the_database_answers() {
    let app = spawn_app().await;
    let response = app.get("/ready").await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn ready_answers_503_with_an_operation_outcome_while_the_database_cannot_be_reached() {
    let url = unreachable_database_url(Backend::Sqlite);
    let app = spawn_app_with(move |settings| settings.database.url = url.into()).await;
    let response = app.get("/ready").await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert!(response.headers()["content-type"].to_str().expect("ASCII").starts_with("application/fhir+json"));
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["code"], "transient");
    // Liveness is not readiness: the process still answers.
    assert_eq!(app.get("/health").await.status().as_u16(), 200);
}
