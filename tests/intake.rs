//! The intake SMART app end to end, in headless Chromium driven through ChromeDriver, against
//! the service and a test double of an EHR (its SMART configuration, authorize and token
//! endpoints, FHIR reads and the QuestionnaireResponse create, all on loopback): launch from the
//! intake card, prefilled answers, answer, submit, the response stored as FHIR R4 requires, the
//! cards shown, the response read back by the CDS service; a refused token exchange, failed
//! writes (answers kept), a forged `state`, a patient launch; accessibility with axe-core.
//! Screenshots of the filled form and of the result go to `<target>/intake-screenshots/`.
//!
//! First, the double itself (`support::smart_ehr`), checked with plain HTTP as a SMART 2.0 client
//! would call it, and the browser (`support::webdriver`), checked on small loopback pages.
//!
//! The browser tests need Debian's `chromium` and `chromium-driver` (`apt-get install chromium
//! chromium-driver`, or `bash .ci/run`). axe-core is the copy vendored from npm in
//! `web/vendor/axe-core/`.

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use support::smart_ehr::{
    AuthorizeBehaviour, EhrDouble, EhrOptions, TokenBehaviour, WriteBehaviour, pkce_s256_matches, s256_challenge,
};
use support::webdriver::Browser;
use support::{TestApp, spawn_app_with};
use thirtyfour::By;

/// A well-formed code verifier (43 unreserved characters).
const VERIFIER: &str = "a-test-code-verifier-of-at-least-forty-three-characters";

/// What the app asks for in an EHR launch.
const SCOPE: &str = "launch openid fhirUser patient/Patient.rs patient/QuestionnaireResponse.cu";

/// The app's redirect URI (the double only redirects to it; nothing listens there).
const REDIRECT_URI: &str = "http://127.0.0.1:9/intake/callback";

/// A client that does not follow redirects, so the authorize endpoint's answer can be read.
fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client")
}

/// The authorize request of an EHR launch, as fhirclient.js sends it, with `changes` applied
/// (an empty value removes the parameter).
fn authorize_parameters(ehr: &EhrDouble, state: &str, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut parameters: BTreeMap<&str, String> = BTreeMap::from([
        ("response_type", "code".to_owned()),
        ("client_id", EhrOptions::default().client_id),
        ("scope", SCOPE.to_owned()),
        ("redirect_uri", REDIRECT_URI.to_owned()),
        ("aud", ehr.fhir_base()),
        ("state", state.to_owned()),
        ("launch", ehr.launch_id()),
        ("code_challenge", s256_challenge(VERIFIER)),
        ("code_challenge_method", "S256".to_owned()),
    ]);
    for (name, value) in changes {
        if value.is_empty() {
            parameters.remove(name);
        } else {
            parameters.insert(name, (*value).to_owned());
        }
    }
    parameters.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// Sends an authorize request; returns its status and, for a redirect, the `code` and `state`
/// of the redirect URI.
async fn authorize_with(ehr: &EhrDouble, parameters: &[(String, String)]) -> (u16, Option<(String, String)>) {
    let response = client()
        .get(format!("{}/auth/authorize", ehr.origin()))
        .query(parameters)
        .send()
        .await
        .expect("the authorize request is sent");
    let status = response.status().as_u16();
    let location = response.headers().get("location").and_then(|value| value.to_str().ok()).map(str::to_owned);
    let redirect = location.map(|location| {
        assert!(location.starts_with(REDIRECT_URI), "{location}");
        let url = url::Url::parse(&location).expect("an absolute redirect");
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        (query["code"].clone(), query["state"].clone())
    });
    (status, redirect)
}

/// An approved authorize request: the code and the state it came back with.
async fn authorize(ehr: &EhrDouble, state: &str) -> (String, String) {
    let (status, redirect) = authorize_with(ehr, &authorize_parameters(ehr, state, &[])).await;
    assert_eq!(status, 302);
    redirect.expect("a redirect with a code")
}

/// Exchanges `code` with `verifier` at the token endpoint; returns the status and the JSON body.
async fn exchange(ehr: &EhrDouble, code: &str, verifier: &str) -> (u16, Value) {
    let response = client()
        .post(format!("{}/auth/token", ehr.origin()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", &EhrOptions::default().client_id),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("the token request is sent");
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    (status, response.json().await.expect("a JSON answer"))
}

/// A token for the default client, through authorize and token.
async fn access_token(ehr: &EhrDouble) -> String {
    let (code, _) = authorize(ehr, "state-1").await;
    let (status, body) = exchange(ehr, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("an access token").to_owned()
}

async fn fhir_get(ehr: &EhrDouble, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client().get(format!("{}{path}", ehr.fhir_base()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the FHIR request is sent");
    (response.status().as_u16(), response.json().await.expect("a JSON answer"))
}

async fn create_response(ehr: &EhrDouble, token: &str, resource: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/QuestionnaireResponse", ehr.fhir_base()))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .await
        .expect("the create is sent")
}

fn questionnaire_response(patient_id: &str) -> Value {
    json!({
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": "http://example.org/Questionnaire/posterior-knee-intake",
        "subject": {"reference": format!("Patient/{patient_id}")},
        "item": [{"linkId": "calf-swelling", "answer": [{"valueBoolean": true}]}]
    })
}

/// The payload of a JWT, decoded without checking its signature (as fhirclient.js does).
fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[test]
fn the_s256_check_agrees_with_the_example_of_rfc_7636_appendix_b() {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert_eq!(s256_challenge(verifier), challenge);
    assert!(pkce_s256_matches(verifier, challenge));
    assert!(!pkce_s256_matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK", challenge));
    assert!(!pkce_s256_matches(challenge, challenge), "the challenge itself is not a verifier (plain is refused)");
    assert!(!pkce_s256_matches("too-short", &s256_challenge("too-short")), "fewer than 43 characters");
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_names_the_endpoints_and_the_smart_capabilities() {
    let ehr = EhrDouble::start(EhrOptions::default()).await;
    let (status, configuration) = fhir_get(&ehr, "/.well-known/smart-configuration", None).await;
    assert_eq!(status, 200);
    assert_eq!(configuration["issuer"], ehr.fhir_base());
    assert_eq!(configuration["authorization_endpoint"], format!("{}/auth/authorize", ehr.origin()));
    assert_eq!(configuration["token_endpoint"], format!("{}/auth/token", ehr.origin()));
    assert_eq!(configuration["code_challenge_methods_supported"], json!(["S256"]));
    let capabilities = configuration["capabilities"].as_array().expect("capabilities");
    for capability in ["launch-ehr", "client-public", "context-ehr-patient", "sso-openid-connect", "permission-v2"] {
        assert!(capabilities.contains(&json!(capability)), "{capability} missing from {capabilities:?}");
    }

    let v1 = EhrDouble::start(EhrOptions { permission_v2: false, ..EhrOptions::default() }).await;
    let (_, configuration) = fhir_get(&v1, "/.well-known/smart-configuration", None).await;
    let capabilities = configuration["capabilities"].as_array().expect("capabilities");
    assert!(capabilities.contains(&json!("permission-v1")) && !capabilities.contains(&json!("permission-v2")));

    let (status, metadata) = fhir_get(&ehr, "/metadata", None).await;
    assert_eq!(status, 200);
    assert_eq!(metadata["fhirVersion"], "4.0.1");
    let oauth_uris = &metadata["rest"][0]["security"]["extension"][0]["extension"];
    assert_eq!(oauth_uris[1]["valueUri"], format!("{}/auth/token", ehr.origin()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_exchanged_with_its_verifier_gives_a_token_that_reads_the_patient() {
    let ehr =
        EhrDouble::start(EhrOptions { app_context: Some("intake=knee".to_owned()), ..EhrOptions::default() }).await;
    let (code, state) = authorize(&ehr, "state-1").await;
    assert_eq!(state, "state-1");
    let (status, token) = exchange(&ehr, &code, VERIFIER).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["scope"], SCOPE);
    assert_eq!(token["patient"], "pat-1");
    assert_eq!(token["appContext"], "intake=knee");
    let claims = jwt_claims(token["id_token"].as_str().expect("an id_token for openid fhirUser"));
    assert_eq!(claims["fhirUser"], format!("{}/Practitioner/dr-1", ehr.fhir_base()));
    assert_eq!(claims["iss"], ehr.fhir_base());
    assert_eq!(claims["aud"], "popliteal-intake");

    let access_token = token["access_token"].as_str().expect("an access token");
    let (status, patient) = fhir_get(&ehr, "/Patient/pat-1", Some(access_token)).await;
    assert_eq!(status, 200);
    assert_eq!(patient["name"][0]["family"], "Lindqvist");
    let (status, missing) = fhir_get(&ehr, "/Patient/someone-else", Some(access_token)).await;
    assert_eq!(status, 404);
    assert_eq!(missing["resourceType"], "OperationOutcome");

    assert_eq!(ehr.issued_tokens(), vec![access_token.to_owned()]);
    assert_eq!(ehr.authorize_requests()[0]["launch"], ehr.launch_id());
    assert_eq!(ehr.token_requests()[0]["code_verifier"], VERIFIER);
    let reads = ehr.fhir_requests();
    assert_eq!(reads[0].path, "/fhir/Patient/pat-1");
    assert!(reads.iter().all(|read| read.authorised && read.method == "GET"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_code_verifier_is_refused_with_invalid_grant() {
    let ehr = EhrDouble::start(EhrOptions::default()).await;
    let (code, _) = authorize(&ehr, "state-1").await;
    let (status, body) = exchange(&ehr, &code, "another-code-verifier-of-at-least-forty-three-chars").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(ehr.issued_tokens().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_is_exchanged_once_only() {
    let ehr = EhrDouble::start(EhrOptions::default()).await;
    let (code, _) = authorize(&ehr, "state-1").await;
    assert_eq!(exchange(&ehr, &code, VERIFIER).await.0, 200);
    let (status, body) = exchange(&ehr, &code, VERIFIER).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(ehr.issued_tokens().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_token_endpoint_refuses_a_correct_exchange() {
    let ehr = EhrDouble::start(EhrOptions { token: TokenBehaviour::Refuse, ..EhrOptions::default() }).await;
    let (code, _) = authorize(&ehr, "state-1").await;
    let (status, body) = exchange(&ehr, &code, VERIFIER).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forging_ehr_redirects_back_with_another_state() {
    let ehr = EhrDouble::start(EhrOptions { authorize: AuthorizeBehaviour::ForgeState, ..EhrOptions::default() }).await;
    let (_, state) = authorize(&ehr, "the-state-sent").await;
    assert_ne!(state, "the-state-sent");
    assert!(!state.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authorize_request_that_breaks_a_rule_is_refused_and_recorded() {
    let ehr = EhrDouble::start(EhrOptions::default()).await;
    let other_audience = format!("{}/other", ehr.origin());
    let broken: [&[(&str, &str)]; 7] = [
        &[("client_id", "someone-else")],
        &[("aud", &other_audience)],
        &[("state", "")],
        &[("code_challenge", "")],
        &[("code_challenge_method", "plain")],
        &[("launch", "not-the-launch")],
        &[("redirect_uri", "intake/callback")],
    ];
    for changes in broken {
        let (status, redirect) = authorize_with(&ehr, &authorize_parameters(&ehr, "state-1", changes)).await;
        assert_eq!((status, redirect), (400, None), "{changes:?}");
    }
    assert_eq!(ehr.authorize_requests().len(), broken.len());
    // A standalone launch (no `launch`) is fine.
    let standalone =
        authorize_parameters(&ehr, "state-1", &[("launch", ""), ("scope", "launch/patient openid fhirUser")]);
    assert_eq!(authorize_with(&ehr, &standalone).await.0, 302);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_an_issued_token_get_401() {
    let ehr = EhrDouble::start(EhrOptions::default()).await;
    let (status, body) = fhir_get(&ehr, "/Patient/pat-1", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(fhir_get(&ehr, "/Observation?patient=pat-1", Some("a-made-up-token")).await.0, 401);
    let create = create_response(&ehr, "a-made-up-token", &questionnaire_response("pat-1")).await;
    assert_eq!(create.status().as_u16(), 401);
    assert!(ehr.stored_responses().is_empty());
    assert!(ehr.fhir_requests().iter().all(|request| !request.authorised));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_questionnaire_response_is_stored_and_found_by_a_search() {
    let on_record = json!({"resourceType": "Condition", "id": "cond-1", "subject": {"reference": "Patient/pat-1"},
        "code": {"text": "Baker's cyst"}});
    let elsewhere = json!({"resourceType": "Condition", "id": "cond-2", "subject": {"reference": "Patient/pat-2"}});
    let ehr = EhrDouble::start(EhrOptions { resources: vec![on_record, elsewhere], ..EhrOptions::default() }).await;
    let token = access_token(&ehr).await;

    let (_, conditions) = fhir_get(&ehr, "/Condition?patient=pat-1&clinical-status=active", Some(&token)).await;
    assert_eq!(conditions["type"], "searchset");
    assert_eq!(conditions["total"], 1);
    assert_eq!(conditions["entry"][0]["fullUrl"], format!("{}/Condition/cond-1", ehr.fhir_base()));

    let response = create_response(&ehr, &token, &questionnaire_response("pat-1")).await;
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers()["location"].to_str().expect("a text Location").to_owned();
    let created: Value = response.json().await.expect("the stored resource");
    let id = created["id"].as_str().expect("an id");
    assert_eq!(location, format!("{}/QuestionnaireResponse/{id}/_history/1", ehr.fhir_base()));
    assert_eq!(created["meta"]["versionId"], "1");
    assert_eq!(ehr.stored_responses(), vec![created.clone()]);

    let (_, found) = fhir_get(&ehr, "/QuestionnaireResponse?subject=Patient/pat-1", Some(&token)).await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"], created);

    let not_a_response = create_response(&ehr, &token, &json!({"resourceType": "Observation"})).await;
    assert_eq!(not_a_response.status().as_u16(), 400);
    assert_eq!(ehr.stored_responses().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_write_answers_its_status_and_stores_nothing() {
    let ehr = EhrDouble::start(EhrOptions { writes: vec![WriteBehaviour::Fail(500)], ..EhrOptions::default() }).await;
    let token = access_token(&ehr).await;
    let failed = create_response(&ehr, &token, &questionnaire_response("pat-1")).await;
    assert_eq!(failed.status().as_u16(), 500);
    assert_eq!(failed.json::<Value>().await.expect("JSON")["resourceType"], "OperationOutcome");
    assert!(ehr.stored_responses().is_empty());
    // The behaviours are used up: the next write is stored.
    assert_eq!(create_response(&ehr, &token, &questionnaire_response("pat-1")).await.status().as_u16(), 201);
    assert_eq!(ehr.stored_responses().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_write_does_not_answer_and_stores_nothing() {
    let ehr = EhrDouble::start(EhrOptions { writes: vec![WriteBehaviour::Hang], ..EhrOptions::default() }).await;
    let token = access_token(&ehr).await;
    let waited = client()
        .post(format!("{}/QuestionnaireResponse", ehr.fhir_base()))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(2))
        .body(questionnaire_response("pat-1").to_string())
        .send()
        .await;
    assert!(waited.is_err_and(|error| error.is_timeout()));
    assert!(ehr.stored_responses().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_and_answers_carry_cors_headers_for_the_calling_origin() {
    let ehr = EhrDouble::start(EhrOptions::default()).await;
    let app_origin = "http://127.0.0.1:8080";
    for path in ["/fhir/QuestionnaireResponse", "/auth/token", "/fhir/.well-known/smart-configuration"] {
        let preflight = client()
            .request(reqwest::Method::OPTIONS, format!("{}{path}", ehr.origin()))
            .header("origin", app_origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
            .await
            .expect("the preflight is sent");
        assert!(preflight.status().is_success(), "{path}: {}", preflight.status());
        let headers = preflight.headers();
        assert_eq!(headers["access-control-allow-origin"], app_origin, "{path}");
        let allowed = headers["access-control-allow-headers"].to_str().expect("text").to_ascii_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{path}: {allowed}");
    }
    let token = access_token(&ehr).await;
    let created = client()
        .post(format!("{}/QuestionnaireResponse", ehr.fhir_base()))
        .bearer_auth(&token)
        .header("origin", app_origin)
        .body(questionnaire_response("pat-1").to_string())
        .send()
        .await
        .expect("the create is sent");
    assert_eq!(created.headers()["access-control-allow-origin"], app_origin);
    assert!(created.headers()["access-control-expose-headers"].to_str().expect("text").contains("Location"));
}

/// Serves fixed pages on a loopback port: `(path, Content-Security-Policy or "", html)`.
/// Returns the origin.
fn serve_pages(pages: Vec<(&'static str, &'static str, &'static str)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().expect("an address").port());
    let server = HttpServer::new(move || {
        pages.iter().fold(App::new(), |app, &(path, policy, html)| {
            app.route(
                path,
                web::get().to(move || async move {
                    let mut response = HttpResponse::Ok();
                    response.content_type("text/html; charset=utf-8");
                    if !policy.is_empty() {
                        response.insert_header(("content-security-policy", policy));
                    }
                    response.body(html)
                }),
            )
        })
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listening")
    .run();
    tokio::spawn(server);
    origin
}

const GREETING_PAGE: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>greeting</title></head>
<body><main><h1 id="greeting">pending</h1></main>
<script>setTimeout(() => { document.getElementById("greeting").textContent = "Hello from loopback"; }, 300);</script>
</body></html>"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_browser_opens_a_loopback_page_and_reads_an_element_once_its_script_has_run() {
    let origin = serve_pages(vec![("/greeting.html", "", GREETING_PAGE)]);
    let browser = Browser::start().await;
    browser.goto(&format!("{origin}/greeting.html")).await;
    let text = browser.wait_for_text("#greeting", "Hello", Duration::from_secs(10)).await;
    assert_eq!(text, "Hello from loopback");
    assert_eq!(browser.wait_for("h1", Duration::from_secs(1)).await.tag_name().await.expect("a tag"), "h1");
    assert_eq!(browser.current_url().await, format!("{origin}/greeting.html"));
    let screenshot = tempfile::tempdir().expect("a folder");
    let path = screenshot.path().join("nested/greeting.png");
    browser.screenshot(&path).await;
    assert!(std::fs::read(&path).expect("the screenshot").starts_with(b"\x89PNG"));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_reports_an_inline_script_that_the_content_security_policy_blocks() {
    let page = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>csp</title></head>
<body><p id="status">not run</p>
<script>document.getElementById("status").textContent = "inline script ran";</script></body></html>"#;
    let origin = serve_pages(vec![("/strict.html", "script-src 'self'", page)]);
    let browser = Browser::start().await;
    browser.goto(&format!("{origin}/strict.html")).await;
    assert_eq!(browser.wait_for_text("#status", "not run", Duration::from_secs(5)).await, "not run");
    let console = browser.console().await;
    assert!(
        console.iter().any(|line| line.starts_with("SEVERE") && line.contains("Content Security Policy")),
        "no CSP violation in the console: {console:#?}"
    );
    // The log is drained from ChromeDriver but kept here: asking again gives the same lines.
    assert_eq!(browser.console().await, console);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn axe_reports_an_image_without_alternative_text() {
    let axe_source = axe_source();
    let page = r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>axe</title></head>
<body><main><h1>An image</h1><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" width="10" height="10"></main></body></html>"#;
    let origin = serve_pages(vec![("/image.html", "", page)]);
    let browser = Browser::start().await;
    browser.goto(&format!("{origin}/image.html")).await;
    let result = browser.run_axe(&axe_source).await;
    let violations = result["violations"].as_array().expect("axe's violations");
    let image_alt = violations.iter().find(|violation| violation["id"] == "image-alt");
    assert_eq!(image_alt.map(|violation| violation["impact"].clone()), Some(json!("critical")), "{violations:#?}");
    browser.close().await;
}

// ---------------------------------------------------------------------------------------------
// The intake app, end to end: headless Chromium, the service, and the EHR double.

/// How long a page may take to get somewhere (lforms renders the whole Questionnaire).
const PAGE_WAIT: Duration = Duration::from_secs(30);

/// The app's write timeout in these tests (the service's `intake.write_timeout_ms`).
const WRITE_TIMEOUT_MS: u64 = 3000;

/// Where the screenshots go: a folder of the Cargo target directory.
fn screenshot_folder() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("..").join("intake-screenshots")
}

/// axe-core as vendored from npm (`web/vendor/axe-core`, checked by `scripts/web/vendor.sh`).
fn axe_source() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/vendor/axe-core/axe.min.js");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("axe-core at {}: {error}", path.display()))
}

/// The service, with the double registered as an EHR under its client id.
async fn spawn_service_for(ehr: &EhrDouble) -> TestApp {
    let issuer = ehr.fhir_base();
    spawn_app_with(move |settings| {
        settings.intake.clients = vec![support::intake_client(&issuer, "popliteal-intake")];
        settings.intake.write_timeout_ms = std::num::NonZeroU64::new(WRITE_TIMEOUT_MS).expect("positive");
    })
    .await
}

/// Left knee pain (ICD-10-CM M25.562) and an active breast cancer on the record.
fn knee_pain_and_cancer(patient_id: &str) -> Vec<Value> {
    let condition = |id: &str, code: &str, display: &str| {
        json!({
            "resourceType": "Condition", "id": id,
            "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] },
            "verificationStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed" }] },
            "code": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display }], "text": display },
            "subject": { "reference": format!("Patient/{patient_id}") },
            "recordedDate": "2026-11-02"
        })
    };
    vec![
        condition("knee-pain-1", "M25.562", "Pain in left knee"),
        condition("cancer-1", "C50.911", "Malignant neoplasm of unspecified site of right female breast"),
    ]
}

/// The intake-missing card's `smart` link for the patient, as the service gives it when the EHR
/// calls the patient-view hook with its FHIR server and a token of its own.
async fn intake_card_link(app: &TestApp, ehr: &EhrDouble, token: &str) -> Value {
    let request = json!({
        "hook": "patient-view",
        "hookInstance": uuid::Uuid::new_v4().to_string(),
        "fhirServer": ehr.fhir_base(),
        "fhirAuthorization": { "access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.rs", "subject": "cds" },
        "context": { "userId": "Practitioner/dr-1", "patientId": ehr.patient_id() },
    });
    let response: Value =
        app.post_json("/cds-services/posterior-knee-pain", &request).await.json().await.expect("JSON");
    let card = support::card(&response, "intake-missing").clone();
    card["links"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["type"] == "smart"))
        .cloned()
        .expect("a smart link")
}

/// Where the EHR sends the browser for an EHR launch of `link`: its URL (at this service's
/// address: the test's `public_url` is not its port) with `iss` and `launch`.
fn launch_url(app: &TestApp, ehr: &EhrDouble, link: &Value) -> String {
    let url = url::Url::parse(link["url"].as_str().expect("a URL")).expect("an absolute URL");
    format!("{}{}?iss={}&launch={}", app.address, url.path(), iss_of(ehr), ehr.launch_id())
}

/// The EHR's FHIR base URL as a query value.
fn iss_of(ehr: &EhrDouble) -> String {
    url::form_urlencoded::byte_serialize(ehr.fhir_base().as_bytes()).collect()
}

/// The app's launch page as the EHR opens it for an EHR launch (`iss` and `launch`).
fn ehr_launch_url(app: &TestApp, ehr: &EhrDouble) -> String {
    format!("{}/intake/launch?iss={}&launch={}", app.address, iss_of(ehr), ehr.launch_id())
}

/// The service and a browser at the app's launch page, opened by the EHR for an EHR launch.
async fn ehr_launch(ehr: &EhrDouble) -> (TestApp, Browser) {
    let app = spawn_service_for(ehr).await;
    let browser = Browser::start().await;
    browser.goto(&ehr_launch_url(&app, ehr)).await;
    (app, browser)
}

/// Clicks the radio button of a boolean item (`true`, `false`) or a choice (its code's label).
async fn answer(browser: &Browser, link_id: &str, value: &str) {
    let id = format!("{link_id}/1/1|{value}");
    let label = browser.client().find(By::Id(&id)).await.unwrap_or_else(|e| panic!("no option {id}: {e}"));
    label.scroll_into_view().await.expect("scrolls");
    label.click().await.unwrap_or_else(|e| panic!("cannot click {id}: {e}"));
}

/// Whether the radio option `link_id|value` is the selected one.
async fn is_selected(browser: &Browser, link_id: &str, value: &str) -> bool {
    let id = format!("{link_id}/1/1|{value}");
    let label = browser.client().find(By::Id(&id)).await.expect("the option");
    label.class_name().await.expect("a class").is_some_and(|c| c.contains("ant-radio-wrapper-checked"))
}

/// The problems of `response` against the Questionnaire (FHIR R4 QuestionnaireResponse rules):
/// every item's linkId exists at that place in the Questionnaire's nesting, groups hold items and
/// no answer, questions hold answers of their type (boolean, integer, a choice among the
/// options), and no item is empty.
fn conformance_problems(questionnaire_items: &[Value], response_items: &[Value], path: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for item in response_items {
        let link_id = item["linkId"].as_str().unwrap_or_default();
        let Some(definition) = questionnaire_items.iter().find(|d| d["linkId"] == link_id) else {
            problems.push(format!("{path}/{link_id}: not an item of the Questionnaire here"));
            continue;
        };
        let kind = definition["type"].as_str().unwrap_or_default();
        let children = item["item"].as_array();
        let answers = item["answer"].as_array();
        match kind {
            "group" => {
                if answers.is_some() {
                    problems.push(format!("{path}/{link_id}: a group has an answer"));
                }
                match children {
                    Some(children) if !children.is_empty() => problems.extend(conformance_problems(
                        definition["item"].as_array().map(Vec::as_slice).unwrap_or_default(),
                        children,
                        &format!("{path}/{link_id}"),
                    )),
                    _ => problems.push(format!("{path}/{link_id}: an empty group")),
                }
            }
            _ => {
                let Some(answers) = answers.filter(|a| !a.is_empty()) else {
                    problems.push(format!("{path}/{link_id}: a question without an answer"));
                    continue;
                };
                if children.is_some() {
                    problems.push(format!("{path}/{link_id}: a question with nested items"));
                }
                for answer in answers {
                    let fine = match kind {
                        "boolean" => answer["valueBoolean"].is_boolean(),
                        "integer" => answer["valueInteger"].is_i64(),
                        "choice" => definition["answerOption"].as_array().is_some_and(|options| {
                            options.iter().any(|o| {
                                o["valueCoding"]["code"] == answer["valueCoding"]["code"]
                                    && o["valueCoding"]["system"] == answer["valueCoding"]["system"]
                            })
                        }),
                        _ => false,
                    };
                    let keys = answer.as_object().map(|o| o.len()).unwrap_or_default();
                    if !fine || keys != 1 {
                        problems.push(format!("{path}/{link_id}: {answer} is not one {kind} answer"));
                    }
                }
            }
        }
    }
    problems
}

/// The answer of `link_id` in a response, at any depth.
fn answer_of(items: &[Value], link_id: &str) -> Option<Value> {
    items.iter().find_map(|item| {
        if item["linkId"] == link_id {
            item["answer"].get(0).cloned()
        } else {
            item["item"].as_array().and_then(|children| answer_of(children, link_id))
        }
    })
}

/// Requests for the record (the SMART configuration and the CapabilityStatement are not).
fn record_reads(ehr: &EhrDouble) -> usize {
    ehr.fhir_requests().iter().filter(|r| !r.path.contains("/.well-known/") && !r.path.ends_with("/metadata")).count()
}

fn published_questionnaire() -> Value {
    serde_json::from_str(include_str!("../cds-hooks/questionnaire/posterior-knee-pain.json")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_record_calls_read_the_ehr_with_the_app_s_token_and_the_cards_call_is_audited() {
    let ehr = EhrDouble::start(EhrOptions { resources: knee_pain_and_cancer("pat-1"), ..EhrOptions::default() }).await;
    let issuer = ehr.fhir_base();
    let settings = support::test_settings(move |settings| {
        settings.intake.clients = vec![support::intake_client(&issuer, "popliteal-intake")];
    });
    let (app, auditor) = support::spawn_app_keeping_auditor(settings).await;
    let token = access_token(&ehr).await;
    let access = json!({
        "fhirServer": ehr.fhir_base(), "patientId": "pat-1", "userId": "Practitioner/dr-1", "accessToken": token,
    });
    let prefill: Value = app.post_json("/intake/api/prefill", &access).await.json().await.expect("JSON");
    let answers = prefill["answers"].as_array().expect("answers");
    let side = answers.iter().find(|a| a["linkId"] == "side").expect("the side");
    assert_eq!(side["answer"]["valueCoding"]["code"], "left");
    assert_eq!(side["from"][0]["reference"], "Condition/knee-pain-1");
    let cancer = answers.iter().find(|a| a["linkId"] == "wells-active-cancer").expect("active cancer");
    assert_eq!(cancer["answer"], json!({ "valueBoolean": true }));
    assert!(cancer["verify"].as_str().is_some_and(|v| v.contains("6 months")));
    assert!(answers.iter().all(|a| a["answer"] != json!({ "valueBoolean": false })), "the record never says no");
    assert_eq!(prefill["unread"], json!([]));
    assert!(ehr.fhir_requests().iter().filter(|r| r.path.contains("Condition")).all(|r| r.authorised));

    let before = auditor.counts().written;
    let mut with_response = access.clone();
    with_response["questionnaireResponse"] = json!({
        "resourceType": "QuestionnaireResponse", "id": "qr-1", "status": "completed",
        "questionnaire": "http://cds.example.org/fhir/Questionnaire/posterior-knee-pain|1.0.0",
        "subject": { "reference": "Patient/pat-1" }, "authored": support::now_rfc3339(),
        "item": [{ "linkId": "grp-safety", "item": [
            { "linkId": "rf-unilateral-swelling", "answer": [{ "valueBoolean": true }] },
            { "linkId": "rf-calf-pain", "answer": [{ "valueBoolean": true }] }
        ]}]
    });
    let answer: Value = app.post_json("/intake/api/cards", &with_response).await.json().await.expect("JSON");
    let topics = support::topics(&answer);
    assert!(
        topics.contains(&"dvt-suspected".to_owned()) && !topics.contains(&"intake-missing".to_owned()),
        "{topics:?}"
    );
    let written =
        support::eventually(Duration::from_secs(10), || async { (auditor.counts().written > before).then_some(()) })
            .await;
    assert!(written.is_some(), "the cards call has its audit record");

    // A token the EHR did not issue reads nothing: the service says the record could not be read.
    let mut forged = access.clone();
    forged["accessToken"] = json!("not-a-token-of-this-ehr");
    assert_eq!(app.post_json("/intake/api/prefill", &forged).await.status(), 412);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinician_launches_the_intake_from_the_card_confirms_the_record_answers_and_sees_the_cards() {
    let ehr = EhrDouble::start(EhrOptions {
        resources: knee_pain_and_cancer("pat-1"),
        app_context: Some(
            r#"{"questionnaire":"http://cds.example.org/fhir/Questionnaire/posterior-knee-pain|1.0.0"}"#.into(),
        ),
        ..EhrOptions::default()
    })
    .await;
    let app = spawn_service_for(&ehr).await;
    let ehr_token = access_token(&ehr).await;
    let link = intake_card_link(&app, &ehr, &ehr_token).await;
    let browser = Browser::start().await;
    browser.goto(&launch_url(&app, &ehr, &link)).await;

    // Prefilled from the record, marked so.
    browser.wait_for_text("#status", "Ready", PAGE_WAIT).await;
    let prefilled = browser.wait_for_text("#prefilled-list", "Pain in left knee", PAGE_WAIT).await;
    assert!(prefilled.contains("Malignant neoplasm"), "{prefilled}");
    assert!(is_selected(&browser, "side", "https://popliteal.dev/CodeSystem/side|left").await, "the record's side");
    browser.wait_for("[id='from-record-side']", PAGE_WAIT).await;
    browser.wait_for("[id='from-record-wells-active-cancer']", PAGE_WAIT).await;
    assert!(is_selected(&browser, "wells-active-cancer", "true").await, "the record's answer is selected");
    assert!(
        browser.client().find(By::Id("item-wells-entire-leg-swollen/1/1")).await.is_ok(),
        "a clinician sees the Wells group"
    );

    // Answered: yes, no, and left unanswered.
    for (link_id, value) in [
        ("rf-unilateral-swelling", "true"),
        ("rf-calf-pain", "true"),
        ("rf-cold-pale-foot", "false"),
        ("wells-entire-leg-swollen", "true"),
        ("wells-pitting-oedema", "true"),
    ] {
        answer(&browser, link_id, value).await;
    }
    let violations = browser.run_axe(&axe_source()).await;
    let serious: Vec<&Value> = violations["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    let described: Vec<String> = serious
        .iter()
        .flat_map(|v| {
            v["nodes"].as_array().into_iter().flatten().map(move |node| {
                let html: String = node["html"].as_str().unwrap_or_default().chars().take(160).collect();
                format!("{} ({}): {} {html}", v["id"], v["impact"], node["target"])
            })
        })
        .collect();
    assert!(described.is_empty(), "serious or critical accessibility violations:\n{}", described.join("\n"));
    browser.client().execute("window.scrollTo(0, 0);", Vec::new()).await.expect("scrolls to the top");
    browser.screenshot(&screenshot_folder().join("filled-form.png")).await;

    browser.client().find(By::Id("submit")).await.expect("the submit button").click().await.expect("clicks");
    browser.wait_for("#cards article[data-topic='dvt-suspected']", PAGE_WAIT).await;
    browser.screenshot(&screenshot_folder().join("result.png")).await;
    let status = browser.wait_for_text("#status", "Done", PAGE_WAIT).await;
    assert!(status.contains("saved"), "{status}");

    // The response on the EHR, as FHIR R4 requires.
    let stored = ehr.stored_responses();
    assert_eq!(stored.len(), 1, "one response written");
    let response = &stored[0];
    assert_eq!(response["status"], "completed");
    assert_eq!(response["questionnaire"], "http://cds.example.org/fhir/Questionnaire/posterior-knee-pain|1.0.0");
    assert_eq!(response["subject"]["reference"], "Patient/pat-1");
    assert_eq!(response["author"]["reference"], "Practitioner/dr-1");
    let authored = response["authored"].as_str().expect("authored");
    assert!(
        time::OffsetDateTime::parse(authored, &time::format_description::well_known::Rfc3339).is_ok(),
        "{authored}"
    );
    let questionnaire = published_questionnaire();
    let items = response["item"].as_array().expect("items");
    let problems = conformance_problems(questionnaire["item"].as_array().expect("items"), items, "");
    assert!(problems.is_empty(), "{problems:#?}\n{response:#}");
    assert_eq!(answer_of(items, "side").expect("side")["valueCoding"]["code"], "left");
    assert_eq!(answer_of(items, "rf-calf-pain"), Some(json!({ "valueBoolean": true })));
    assert_eq!(answer_of(items, "rf-cold-pale-foot"), Some(json!({ "valueBoolean": false })));
    assert_eq!(answer_of(items, "wells-active-cancer"), Some(json!({ "valueBoolean": true })));
    assert_eq!(answer_of(items, "rf-warmth"), None, "an unanswered question stays absent");

    // The EHR saw PKCE S256 and the narrowest scopes, and the code exchanged with its verifier.
    let from_app = |parameters: &BTreeMap<String, String>| {
        parameters.get("redirect_uri").is_some_and(|uri| uri.ends_with("/intake/"))
    };
    let authorize = ehr.authorize_requests().into_iter().find(from_app).expect("the app's authorize request");
    let authorize = &authorize;
    assert_eq!(authorize["code_challenge_method"], "S256");
    assert_eq!(authorize["launch"], ehr.launch_id());
    assert_eq!(authorize["aud"], ehr.fhir_base());
    let launch: Value = app
        .client
        .get(format!("{}/intake/api/launch?iss={}", app.address, ehr.fhir_base()))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(authorize["scope"], launch["scopes"]["ehr"]["v2"].as_str().expect("scopes"));
    let exchange = ehr.token_requests().into_iter().find(from_app).expect("the app's token request");
    assert_eq!(support::smart_ehr::s256_challenge(&exchange["code_verifier"]), authorize["code_challenge"]);

    // No Content-Security-Policy violation on the way.
    let console = browser.console().await;
    let blocked: Vec<&String> = console.iter().filter(|line| line.contains("Content Security Policy")).collect();
    assert!(blocked.is_empty(), "{blocked:#?}");
    browser.close().await;

    // Read back by the CDS service from the EHR: the intake now counts, and the DVT card is there.
    let request = json!({
        "hook": "patient-view",
        "hookInstance": uuid::Uuid::new_v4().to_string(),
        "fhirServer": ehr.fhir_base(),
        "fhirAuthorization": { "access_token": ehr_token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.rs", "subject": "cds" },
        "context": { "userId": "Practitioner/dr-1", "patientId": "pat-1" },
    });
    let answer: Value = app.post_json("/cds-services/posterior-knee-pain", &request).await.json().await.expect("JSON");
    let topics = support::topics(&answer);
    assert!(topics.contains(&"dvt-suspected".to_owned()), "{topics:?}");
    assert!(!topics.contains(&"intake-missing".to_owned()), "{topics:?}");
    let dvt = support::card(&answer, "dvt-suspected");
    assert_eq!(dvt["indicator"], "critical", "cancer, leg swollen, pitting oedema: Wells likely");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_write_keeps_every_answer_on_screen_says_why_and_a_retry_saves_it() {
    let ehr = EhrDouble::start(EhrOptions {
        resources: knee_pain_and_cancer("pat-1"),
        writes: vec![
            WriteBehaviour::Fail(503),
            WriteBehaviour::Fail(401),
            WriteBehaviour::Fail(403),
            WriteBehaviour::Hang,
        ],
        ..EhrOptions::default()
    })
    .await;
    let (_app, browser) = ehr_launch(&ehr).await;
    browser.wait_for_text("#status", "Ready", PAGE_WAIT).await;
    answer(&browser, "rf-calf-pain", "true").await;
    answer(&browser, "rf-fever", "false").await;
    let submit =
        || async { browser.client().find(By::Id("submit")).await.expect("the button").click().await.expect("clicks") };
    for expected in ["error 503", "(401)", "(403)", "did not answer within 3 seconds"] {
        submit().await;
        let problem = browser.wait_for_text("#problem", expected, PAGE_WAIT).await;
        assert!(problem.contains("Nothing you entered is lost"), "{problem}");
        browser.wait_for_text("#submit", "Try saving again", PAGE_WAIT).await;
        assert!(is_selected(&browser, "rf-calf-pain", "true").await, "the answer stays after {expected}");
        assert!(is_selected(&browser, "rf-fever", "false").await, "the answer stays after {expected}");
        assert!(ehr.stored_responses().is_empty());
    }
    submit().await;
    browser.wait_for_text("#status", "Done", PAGE_WAIT).await;
    let stored = ehr.stored_responses();
    assert_eq!(stored.len(), 1);
    let items = stored[0]["item"].as_array().expect("items");
    assert_eq!(answer_of(items, "rf-calf-pain"), Some(json!({ "valueBoolean": true })));
    assert_eq!(answer_of(items, "rf-fever"), Some(json!({ "valueBoolean": false })));
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_not_saved_before_a_session_expired_come_back_when_the_app_is_launched_again() {
    let ehr = EhrDouble::start(EhrOptions { writes: vec![WriteBehaviour::Fail(401)], ..EhrOptions::default() }).await;
    let (app, browser) = ehr_launch(&ehr).await;
    browser.wait_for_text("#status", "Ready", PAGE_WAIT).await;
    answer(&browser, "rf-calf-pain", "true").await;
    answer(&browser, "rf-warmth", "false").await;
    browser.client().find(By::Id("submit")).await.expect("the button").click().await.expect("clicks");
    browser.wait_for_text("#problem", "(401)", PAGE_WAIT).await;
    // The clinician opens the intake again from the EHR, in the same tab.
    browser.goto(&ehr_launch_url(&app, &ehr)).await;
    browser.wait_for_text("#status", "Ready", PAGE_WAIT).await;
    browser.wait_for_text("#draft", "not saved last time", PAGE_WAIT).await;
    assert!(is_selected(&browser, "rf-calf-pain", "true").await, "the yes is back");
    assert!(is_selected(&browser, "rf-warmth", "false").await, "the no is back");
    browser.client().find(By::Id("submit")).await.expect("the button").click().await.expect("clicks");
    browser.wait_for_text("#status", "Done", PAGE_WAIT).await;
    let items = ehr.stored_responses()[0]["item"].as_array().expect("items").clone();
    assert_eq!(answer_of(&items, "rf-calf-pain"), Some(json!({ "valueBoolean": true })));
    assert_eq!(answer_of(&items, "rf-warmth"), Some(json!({ "valueBoolean": false })));
    // Saved: a third launch starts afresh.
    browser.goto(&ehr_launch_url(&app, &ehr)).await;
    browser.wait_for_text("#status", "Ready", PAGE_WAIT).await;
    assert!(browser.client().find(By::Css("#draft[hidden]")).await.is_ok(), "no draft after a save");
    assert!(is_selected(&browser, "rf-calf-pain", "null").await, "the form starts unanswered");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_runs_framed_in_the_ehr_s_chart_and_a_site_that_is_not_a_registered_ehr_cannot_frame_it() {
    let ehr = EhrDouble::start(EhrOptions::default()).await;
    let app = spawn_service_for(&ehr).await;
    let launch = ehr_launch_url(&app, &ehr);
    let browser = Browser::start().await;
    browser.goto(&ehr.chart_url(&launch)).await;
    browser.wait_for("#app", PAGE_WAIT).await.enter_frame().await.expect("into the app's frame");
    browser.wait_for_text("#status", "Ready", PAGE_WAIT).await;
    browser.client().enter_default_frame().await.expect("back to the chart");
    assert!(!browser.console().await.iter().any(|line| line.contains("frame-ancestors")), "framed by its EHR: allowed");

    // Another site (here a second EHR, not registered with the service) frames the same page.
    let elsewhere = EhrDouble::start(EhrOptions::default()).await;
    browser.goto(&elsewhere.chart_url(&launch)).await;
    let refused = support::eventually(PAGE_WAIT, || async {
        browser.console().await.into_iter().find(|line| line.contains("frame-ancestors"))
    })
    .await;
    assert!(refused.is_some(), "the browser refuses to show the app framed by an unregistered site");
    assert!(elsewhere.authorize_requests().is_empty() && elsewhere.token_requests().is_empty());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_exchange_stops_the_app_with_a_message_and_no_form() {
    let ehr = EhrDouble::start(EhrOptions { token: TokenBehaviour::Refuse, ..EhrOptions::default() }).await;
    let (_app, browser) = ehr_launch(&ehr).await;
    let problem = browser.wait_for_text("#problem", "sign-in with the EHR could not be completed", PAGE_WAIT).await;
    assert!(problem.contains("Open the intake again"), "{problem}");
    assert_eq!(ehr.token_requests().len(), 1, "the exchange was tried once");
    assert!(browser.client().find(By::Css("#intake:not([hidden])")).await.is_err(), "no form is shown");
    assert_eq!(record_reads(&ehr), 0, "nothing was read without a token");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_state_is_refused_and_the_code_is_never_exchanged() {
    let ehr = EhrDouble::start(EhrOptions { authorize: AuthorizeBehaviour::ForgeState, ..EhrOptions::default() }).await;
    let (_app, browser) = ehr_launch(&ehr).await;
    browser.wait_for_text("#problem", "sign-in with the EHR could not be completed", PAGE_WAIT).await;
    assert!(ehr.token_requests().is_empty(), "a forged state must not reach the token endpoint");
    assert_eq!(record_reads(&ehr), 0);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_launch_on_a_smart_v1_ehr_hides_the_wells_group_and_asks_v1_scopes() {
    let ehr = EhrDouble::start(EhrOptions {
        fhir_user: Some("Patient/pat-1".into()),
        permission_v2: false,
        resources: knee_pain_and_cancer("pat-1"),
        ..EhrOptions::default()
    })
    .await;
    let app = spawn_service_for(&ehr).await;
    let browser = Browser::start().await;
    // A standalone launch: the patient opens the app with the EHR's address only.
    browser.goto(&format!("{}/intake/launch?iss={}", app.address, iss_of(&ehr))).await;
    browser.wait_for_text("#status", "Ready", PAGE_WAIT).await;
    browser.wait_for("[id='item-rf-calf-pain/1/1']", PAGE_WAIT).await;
    assert!(
        browser.client().find(By::Id("item-wells-entire-leg-swollen/1/1")).await.is_err(),
        "no Wells group for a patient"
    );
    let note = browser.wait_for_text("#audience-note", "Your clinician", PAGE_WAIT).await;
    assert!(note.contains("Wells"), "{note}");
    let prefilled = browser.wait_for_text("#prefilled-list", "Pain in left knee", PAGE_WAIT).await;
    assert!(
        !prefilled.contains("Malignant"),
        "the Wells item from the record is not shown to the patient: {prefilled}"
    );
    let scope = &ehr.authorize_requests()[0]["scope"];
    assert!(scope.starts_with("launch/patient openid fhirUser "), "{scope}");
    assert!(
        scope.contains("patient/Condition.read") && scope.contains("patient/QuestionnaireResponse.write"),
        "{scope}"
    );
    answer(&browser, "rf-calf-pain", "true").await;
    browser.client().find(By::Id("submit")).await.expect("the button").click().await.expect("clicks");
    browser.wait_for_text("#status", "Done", PAGE_WAIT).await;
    let stored = ehr.stored_responses();
    assert_eq!(stored[0]["author"]["reference"], "Patient/pat-1");
    assert!(answer_of(stored[0]["item"].as_array().expect("items"), "wells-active-cancer").is_none());
    browser.close().await;
}
