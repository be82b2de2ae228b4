//! CORS for browser clients: the shipped `local` settings let a CDS Hooks Sandbox run on this
//! machine call (any loopback port), production allows only the origins it lists, and a refused
//! browser call gets an OperationOutcome that says why without echoing the origin.
//! (`tests/browser.rs` does the same from a real headless Chromium.)

use serde_json::Value;

use crate::support::{TestApp, shipped_cors, spawn_app_with};

const SERVICE: &str = "/cds-services/posterior-knee-pain";

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, format!("{}{SERVICE}", app.address))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .expect("sent")
}

async fn discovery_from(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client.get(format!("{}/cds-services", app.address)).header("origin", origin).send().await.expect("sent")
}

/// Asserts the answer to a refused preflight: 400, no CORS grant, an OperationOutcome saying the
/// origin is not allowed, and not the origin itself.
async fn assert_preflight_refused(response: reqwest::Response, origin: &str) {
    assert_eq!(response.status().as_u16(), 400, "{origin}");
    assert!(response.headers().get("access-control-allow-origin").is_none(), "{origin}");
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("application/fhir+json"));
    let body = response.text().await.expect("a body");
    let outcome: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().expect("diagnostics");
    assert!(diagnostics.contains("Origin is not allowed by this service's CORS settings"), "{diagnostics}");
    assert!(!body.contains(origin), "the origin is echoed: {body}");
}

/// A call that needs no preflight is answered, but without a CORS grant: the browser keeps the
/// answer from the page.
fn assert_not_granted(response: &reqwest::Response, origin: &str) {
    assert!(response.headers().get("access-control-allow-origin").is_none(), "{origin}");
}

async fn assert_origin_allowed(response: reqwest::Response, origin: &str) {
    assert!(response.status().is_success(), "{origin}: {}", response.status());
    assert_eq!(response.headers()["access-control-allow-origin"], origin);
}

#[tokio::test]
async fn the_local_environment_as_shipped_lets_browsers_on_any_loopback_port_call() {
    let app = spawn_app_with(|settings| settings.cors = shipped_cors("local")).await;
    for origin in
        ["http://127.0.0.1:8093", "http://localhost:3000", "http://[::1]:8080", "https://sandbox.cds-hooks.org"]
    {
        let response = preflight(&app, origin).await;
        let allowed = response.headers()["access-control-allow-headers"].to_str().expect("ascii").to_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
        assert_origin_allowed(response, origin).await;
        assert_origin_allowed(discovery_from(&app, origin).await, origin).await;
    }
}

#[tokio::test]
async fn origins_that_only_look_like_loopback_are_refused_with_an_outcome_that_does_not_echo_them() {
    let app = spawn_app_with(|settings| settings.cors = shipped_cors("local")).await;
    for origin in ["http://localhost.evil.com", "http://127.0.0.1.evil.com:8093", "https://evil.example.com"] {
        assert_preflight_refused(preflight(&app, origin).await, origin).await;
        assert_not_granted(&discovery_from(&app, origin).await, origin);
    }
}

#[tokio::test]
async fn production_refuses_a_loopback_origin_unless_it_is_listed() {
    let origin = "http://127.0.0.1:8093";
    let app = spawn_app_with(|settings| settings.cors = shipped_cors("production")).await;
    assert_preflight_refused(preflight(&app, origin).await, origin).await;
    assert_not_granted(&discovery_from(&app, origin).await, origin);
    assert_origin_allowed(preflight(&app, "https://sandbox.cds-hooks.org").await, "https://sandbox.cds-hooks.org")
        .await;

    let listed = spawn_app_with(|settings| {
        settings.cors = shipped_cors("production");
        settings.cors.allowed_origins.push(origin.to_owned().try_into().expect("an origin"));
    })
    .await;
    assert_origin_allowed(preflight(&listed, origin).await, origin).await;
    assert_origin_allowed(discovery_from(&listed, origin).await, origin).await;
}

#[tokio::test]
async fn a_call_without_an_origin_is_not_a_cors_refusal() {
    let app = spawn_app_with(|settings| settings.cors = shipped_cors("production")).await;
    let response = app.get("/cds-services").await;
    assert_eq!(response.status().as_u16(), 200);
    let response = app.client.post(format!("{}{SERVICE}", app.address)).body("{").send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 400);
    let body = response.text().await.expect("a body");
    assert!(!body.contains("CORS"), "{body}");
}
