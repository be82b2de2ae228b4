//! Bad input gets a clear 4xx with a FHIR OperationOutcome, never a panic or a 500.

use serde_json::json;

use crate::support::{spawn_app, spawn_app_with, vignette_request};

const SERVICE: &str = "/cds-services/posterior-knee-pain";

async fn outcome(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status().as_u16(), status);
    assert!(
        response.headers()["content-type"].to_str().expect("ascii").starts_with("application/fhir+json"),
        "errors are FHIR"
    );
    let body: serde_json::Value = response.json().await.expect("an OperationOutcome is JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["severity"], "error");
    body["issue"][0]["diagnostics"].as_str().expect("diagnostics").to_owned()
}

#[tokio::test]
async fn malformed_json_is_a_400_operation_outcome() {
    let app = spawn_app().await;
    let text = outcome(app.post_raw(SERVICE, b"{\"hook\": \"patient-view\",".to_vec()).await, 400).await;
    assert!(text.contains("not valid JSON"), "{text}");
}

#[tokio::test]
async fn a_missing_hook_hook_instance_or_context_is_a_400_that_names_it() {
    let app = spawn_app().await;
    for field in ["hook", "hookInstance", "context"] {
        let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
        request.as_object_mut().expect("object").remove(field);
        let text = outcome(app.post_json(SERVICE, &request).await, 400).await;
        assert!(text.starts_with(field), "{field}: {text}");
    }
}

#[tokio::test]
async fn a_hook_that_is_not_the_services_hook_is_a_400() {
    let app = spawn_app().await;
    let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
    request["hook"] = json!("order-sign");
    let text = outcome(app.post_json(SERVICE, &request).await, 400).await;
    assert!(text.contains("patient-view"), "{text}");
}

#[tokio::test]
async fn an_unknown_service_is_a_404() {
    let app = spawn_app().await;
    let request = vignette_request("baker-cyst-with-mechanical-symptoms");
    outcome(app.post_json("/cds-services/no-such-service", &request).await, 404).await;
}

#[tokio::test]
async fn an_unknown_path_is_a_404_operation_outcome() {
    let app = spawn_app().await;
    outcome(app.get("/nothing/here").await, 404).await;
}

#[tokio::test]
async fn a_required_prefetch_key_absent_is_a_412_naming_it() {
    let app = spawn_app().await;
    for key in ["patient", "questionnaireResponses"] {
        let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
        request["prefetch"].as_object_mut().expect("prefetch").remove(key);
        let text = outcome(app.post_json(SERVICE, &request).await, 412).await;
        assert!(text.contains(key), "{text}");
    }
}

#[tokio::test]
async fn a_required_prefetch_key_that_failed_is_a_412() {
    let app = spawn_app().await;
    let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
    request["prefetch"]["questionnaireResponses"] = json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": "forbidden" }]
    });
    outcome(app.post_json(SERVICE, &request).await, 412).await;
}

#[tokio::test]
async fn no_prefetch_at_all_is_a_412_not_a_crash() {
    let app = spawn_app().await;
    let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
    request.as_object_mut().expect("object").remove("prefetch");
    outcome(app.post_json(SERVICE, &request).await, 412).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = std::num::NonZeroUsize::new(2_000).expect("positive")).await;
    let request = vignette_request("baker-cyst-with-mechanical-symptoms");
    outcome(app.post_json(SERVICE, &request).await, 413).await;
}

#[tokio::test]
async fn error_bodies_never_echo_what_was_sent() {
    let app = spawn_app().await;
    let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
    request["context"]["patientId"] = json!({ "name": "Jane Secretname" });
    let text = outcome(app.post_json(SERVICE, &request).await, 400).await;
    assert!(!text.contains("Secretname"), "{text}");
    let body =
        br#"{"hook":"patient-view","hookInstance":"x","context":{"patientId":"p"},"prefetch":"Jane Secretname"}"#;
    let text = outcome(app.post_raw(SERVICE, body.to_vec()).await, 400).await;
    assert!(!text.contains("Secretname"), "{text}");
}

#[tokio::test]
async fn a_prefetch_patient_other_than_the_context_patient_is_refused() {
    let app = spawn_app().await;
    let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
    request["context"]["patientId"] = json!("someone-else");
    outcome(app.post_json(SERVICE, &request).await, 400).await;
}

#[tokio::test]
async fn wrong_types_in_the_envelope_are_400s_not_500s() {
    let app = spawn_app().await;
    let bodies = [
        json!([]),
        json!("patient-view"),
        json!({"hook": 1, "hookInstance": "a", "context": {}}),
        json!({"hook": "patient-view", "hookInstance": ["a"], "context": {}}),
        json!({"hook": "patient-view", "hookInstance": "a", "context": []}),
        json!({"hook": "patient-view", "hookInstance": "a", "context": {"userId": "u", "patientId": 7}}),
        json!({"hook": "patient-view", "hookInstance": "a", "context": {"userId": "u", "patientId": "p"}, "prefetch": []}),
        json!({"hook": "patient-view", "hookInstance": "a", "context": {"userId": "u", "patientId": "p"}, "fhirServer": 3}),
    ];
    for body in bodies {
        let response = app.post_json(SERVICE, &body).await;
        assert_eq!(response.status().as_u16(), 400, "{body}");
    }
}

#[tokio::test]
async fn a_body_nested_too_deeply_is_a_400_on_hooks_and_feedback_alike() {
    let app = spawn_app().await;
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let body = format!(r#"{{"feedback": {deep}}}"#).into_bytes();
    for path in [SERVICE.to_owned(), format!("{SERVICE}/feedback")] {
        let text = outcome(app.post_raw(&path, body.clone()).await, 400).await;
        assert!(text.contains("deeper"), "{path}: {text}");
    }
}

#[tokio::test]
async fn a_method_a_path_does_not_answer_is_a_405_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (reqwest::Method::POST, "/health", "GET"),
        (reqwest::Method::TRACE, "/openapi.yaml", "GET"),
        (reqwest::Method::DELETE, SERVICE, "POST"),
        (reqwest::Method::GET, "/cds-services/posterior-knee-pain/feedback", "POST"),
        (reqwest::Method::PUT, "/fhir/Questionnaire/posterior-knee-pain", "GET"),
    ] {
        let response = app
            .client
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .expect("the request is sent");
        assert_eq!(response.headers().get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{method} {path}");
        outcome(response, 405).await;
    }
}
