//! The intake app's end-to-end support: the SMART EHR double (`support::smart_ehr`), checked with
//! plain HTTP as a SMART 2.0 client would call it, and the headless browser
//! (`support::webdriver`), checked on small loopback pages. The end-to-end flow tests of the app
//! will live here too.
//!
//! The browser tests need Debian's `chromium` and `chromium-driver` (`apt-get install chromium
//! chromium-driver`, or `bash .ci/run`). The axe-core test needs `POPLITEAL_AXE_JS`, the path of
//! axe-core's `axe.min.js`.

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
    let Some(axe_path) = std::env::var_os("POPLITEAL_AXE_JS") else {
        panic!(
            "POPLITEAL_AXE_JS is not set: set it to the path of axe-core's axe.min.js (e.g. `npm pack \
             axe-core@4.14.1` and its package/axe.min.js, or the repository's vendored copy)"
        )
    };
    let axe_source = std::fs::read_to_string(&axe_path).expect("POPLITEAL_AXE_JS names a readable file");
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
