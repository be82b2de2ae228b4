//! The intake app's HTTP surface without a browser: its files and their security headers, the
//! launch settings per registered EHR, and the refusals of its record calls (an EHR that is not
//! registered, a malformed body). The whole flow in a browser is `tests/intake.rs`.

use popliteal::configuration::AuthMode;
use serde_json::{Value, json};

use crate::support::{TestApp, closed_port, intake_client, spawn_app_with};

const ISSUER: &str = "https://ehr.example.org/fhir/r4";

/// The service with one registered EHR and EHR authentication on (the intake's calls do not
/// carry a CDS Hooks JWT: they must not need one).
async fn spawn_registered() -> TestApp {
    spawn_app_with(|settings| {
        settings.auth.mode = AuthMode::Jwt;
        settings.intake.clients = vec![intake_client(ISSUER, "popliteal-intake")];
    })
    .await
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(format!("{}{path}", app.address)).send().await.expect("an answer")
}

#[tokio::test]
async fn the_app_s_pages_are_served_with_a_policy_that_allows_scripts_from_the_service_only() {
    let app = spawn_registered().await;
    for path in ["/intake/launch", "/intake/", "/intake/app.js", "/intake/vendor/lforms/lhc-forms.js"] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        let policy = headers["content-security-policy"].to_str().expect("ASCII");
        assert!(policy.contains("script-src 'self';"), "{path}: {policy}");
        assert!(policy.contains("connect-src 'self' https://ehr.example.org;"), "{path}: {policy}");
        assert!(policy.contains("frame-ancestors 'self' https://ehr.example.org;"), "{path}: {policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
    let page = get(&app, "/intake/").await.text().await.expect("a page");
    assert!(page.contains("vendor/lforms/lhc-forms.js") && page.contains("vendor/fhirclient/fhir-client.min.js"));
}

#[tokio::test]
async fn the_app_without_its_slash_is_redirected_and_an_unknown_file_is_a_404_operation_outcome() {
    let app = TestApp {
        client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client"),
        ..spawn_registered().await
    };
    let redirect = get(&app, "/intake").await;
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/intake/");
    let missing = get(&app, "/intake/vendor/lforms/lhc-forms.js.map").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn a_registered_ehr_gets_its_client_id_and_the_scopes_and_another_is_refused() {
    let app = spawn_registered().await;
    for iss in [ISSUER, "https://ehr.example.org/fhir/r4/"] {
        let response = get(&app, &format!("/intake/api/launch?iss={}", urlencoding(iss))).await;
        assert_eq!(response.status(), 200, "{iss}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["clientId"], "popliteal-intake");
        assert!(body["scopes"]["ehr"]["v2"].as_str().is_some_and(|s| s.starts_with("launch openid fhirUser ")));
        assert!(body["scopes"]["standalone"]["v1"].as_str().is_some_and(|s| s.contains("patient/Condition.read")));
    }
    let other = get(&app, &format!("/intake/api/launch?iss={}", urlencoding("https://evil.example.net/fhir"))).await;
    assert_eq!(other.status(), 403);
    let body: Value = other.json().await.expect("JSON");
    assert_eq!(body["issue"][0]["code"], "forbidden");
    assert!(!body.to_string().contains("evil.example.net"), "the refusal does not echo the client's text");
}

fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn a_record_call_naming_an_unregistered_ehr_is_refused_before_the_token_goes_anywhere() {
    let app = spawn_registered().await;
    // A server that would answer: it must never be asked.
    let elsewhere = format!("http://127.0.0.1:{}/fhir", closed_port());
    for path in ["/intake/api/prefill", "/intake/api/cards"] {
        let body = json!({
            "fhirServer": elsewhere, "patientId": "p1", "userId": "Practitioner/dr-1", "accessToken": "a-secret-token",
            "questionnaireResponse": { "resourceType": "QuestionnaireResponse" }
        });
        let response = app.post_json(path, &body).await;
        assert_eq!(response.status(), 403, "{path}");
        let text = response.text().await.expect("a body");
        assert!(!text.contains("a-secret-token"), "{path}: {text}");
    }
}

#[tokio::test]
async fn a_malformed_record_call_is_a_400_operation_outcome() {
    let app = spawn_registered().await;
    let cases = [
        json!({ "fhirServer": ISSUER }),
        json!({ "fhirServer": ISSUER, "patientId": "p/1", "userId": "Practitioner/dr-1", "accessToken": "t" }),
        json!({ "fhirServer": ISSUER, "patientId": "p1", "userId": "Organization/o", "accessToken": "t" }),
        json!({ "fhirServer": ISSUER, "patientId": "p1", "userId": "Practitioner/dr-1", "accessToken": "t", "extra": 1 }),
    ];
    for body in cases {
        let response = app.post_json("/intake/api/prefill", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.expect("JSON");
        assert_eq!(answer["resourceType"], "OperationOutcome", "{body}");
    }
    let no_response =
        json!({ "fhirServer": ISSUER, "patientId": "p1", "userId": "Practitioner/dr-1", "accessToken": "t" });
    assert_eq!(app.post_json("/intake/api/cards", &no_response).await.status(), 400);
}

#[tokio::test]
async fn the_intake_card_launches_the_app_with_the_questionnaire_as_app_context() {
    let app = spawn_app_with(|_| {}).await;
    let request = crate::support::vignette_request("no-intake-answers");
    let response: Value =
        app.post_json("/cds-services/posterior-knee-pain", &request).await.json().await.expect("JSON");
    let card = crate::support::card(&response, "intake-missing");
    let links = card["links"].as_array().expect("links");
    assert_eq!(links[0]["type"], "smart", "the app comes first: {links:?}");
    assert!(links[0]["url"].as_str().is_some_and(|url| url.ends_with("/intake/launch")));
    let context: Value = serde_json::from_str(links[0]["appContext"].as_str().expect("appContext")).expect("JSON");
    assert_eq!(context["questionnaire"], "http://cds.example.org/fhir/Questionnaire/posterior-knee-pain|1.0.0");
    assert_eq!(links[1]["type"], "absolute");
    assert!(links[1]["url"].as_str().is_some_and(|url| url.ends_with("/fhir/Questionnaire/posterior-knee-pain")));
}
