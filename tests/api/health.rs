use serde_json::json;

use crate::support::{Backend, eventually, spawn_app, spawn_app_with, unreachable_database_url, vignette_request};

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
async fn ready_counts_the_audit_records_this_process_has_written() {
    let app = spawn_app().await;
    let body: serde_json::Value = app.get("/ready").await.json().await.expect("JSON");
    assert_eq!(body["audit"], json!({"written": 0, "backlog": {"records": 0, "bytes": 0}, "lost": 0, "rejected": 0}));

    let request = vignette_request("dvt-likely-with-cancer-on-record");
    assert_eq!(app.post_json("/cds-services/posterior-knee-pain", &request).await.status().as_u16(), 200);
    let audit = eventually(std::time::Duration::from_secs(10), || async {
        let body: serde_json::Value = app.get("/ready").await.json().await.expect("JSON");
        (body["audit"]["written"] == 1 && body["audit"]["backlog"]["records"] == 0).then_some(body["audit"].clone())
    })
    .await
    .expect("the call's audit record is counted once written");
    assert_eq!(audit, json!({"written": 1, "backlog": {"records": 0, "bytes": 0}, "lost": 0, "rejected": 0}));
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
