//! `cds-hooks/openapi.yaml` describes what the service answers: the document is served, its
//! schemas compile as JSON Schema 2020-12, every vignette's response (patient-view and the order
//! hooks) validates against the response schema of its operation and status, and so does every
//! kind of error (OperationOutcome, with its headers).

use serde_json::{Value, json};

use crate::support::{
    Backend, load_order_vignettes, load_vignettes, spawn_app, spawn_app_with, unreachable_database_url,
    vignette_request,
};

const DOCUMENT: &str = include_str!("../../cds-hooks/openapi.yaml");
const PATIENT_VIEW: &str = "/cds-services/posterior-knee-pain";

/// The OpenAPI document, read as JSON.
fn document() -> Value {
    serde_norway::from_str(DOCUMENT).expect("cds-hooks/openapi.yaml is YAML")
}

/// A JSON Schema 2020-12 validator for `schema` (a fragment of the document that may `$ref`
/// `#/components/schemas/...`): the root schema holds the document's components, so the
/// references resolve inside it.
fn validator(document: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document["components"],
        "allOf": [schema],
    });
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("the schema {schema} compiles: {e}"))
}

fn named(document: &Value, name: &str) -> jsonschema::Validator {
    assert!(document["components"]["schemas"].get(name).is_some(), "no schema {name}");
    validator(document, &json!({ "$ref": format!("#/components/schemas/{name}") }))
}

fn problems(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|error| format!("{}: {error}", error.instance_path())).collect()
}

/// The response object the document gives for `path` (as templated in the document), `method`
/// and `status`, with a `$ref` to `#/components/responses/...` followed.
fn documented_response(document: &Value, path: &str, method: &str, status: u16) -> Value {
    let operation = &document["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not in the document");
    let response = &operation["responses"][status.to_string()];
    assert!(response.is_object(), "{method} {path} answered {status}, which the document does not list");
    match response["$ref"].as_str() {
        Some(reference) => {
            let name = reference.strip_prefix("#/components/responses/").expect("a components/responses $ref");
            document["components"]["responses"][name].clone()
        }
        None => response.clone(),
    }
}

/// Checks an answer against the document: status listed, content type listed (or no body when
/// none is), the body valid against the schema, the documented headers present.
async fn conformance(document: &Value, path: &str, method: &str, response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let expected = documented_response(document, path, method, status);
    for (name, header) in expected["headers"].as_object().into_iter().flatten() {
        if header["required"] == true {
            assert!(response.headers().contains_key(name.as_str()), "{method} {path} {status}: no {name} header");
        }
    }
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
    let body = response.bytes().await.expect("a body");
    let Some(content) = expected["content"].as_object() else {
        assert!(body.is_empty(), "{method} {path} {status}: the document lists no body");
        return (status, Value::Null);
    };
    let content_type = content_type.unwrap_or_else(|| panic!("{method} {path} {status}: no content type"));
    let media = content
        .get(&content_type)
        .unwrap_or_else(|| panic!("{method} {path} {status}: content type {content_type} is not documented"));
    if content_type == "application/yaml" {
        return (status, Value::String(String::from_utf8(body.to_vec()).expect("UTF-8")));
    }
    let value: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{method} {path} {status}: {e}"));
    let found = problems(&validator(document, &media["schema"]), &value);
    assert!(found.is_empty(), "{method} {path} {status} does not conform:\n{}\n{value:#}", found.join("\n"));
    (status, value)
}

#[test]
fn the_document_is_openapi_3_1_and_every_schema_compiles() {
    let document = document();
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "OpenAPI 3.1");
    for name in document["components"]["schemas"].as_object().expect("schemas").keys() {
        named(&document, name);
    }
    let paths: Vec<&str> = document["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    for path in [
        "/cds-services",
        "/cds-services/posterior-knee-pain",
        "/cds-services/posterior-knee-pain-order-select",
        "/cds-services/posterior-knee-pain-order-sign",
        "/cds-services/{id}/feedback",
        "/cds-services/{id}/feedback/summary",
        "/fhir/Questionnaire/{id}",
        "/health",
        "/ready",
        "/openapi.yaml",
        "/intake/launch",
        "/intake/api/launch",
        "/intake/api/prefill",
        "/intake/api/cards",
    ] {
        assert!(paths.contains(&path), "{path} is not described");
    }
    // The intake app's calls carry its SMART token in the body, not a CDS Hooks JWT.
    for (path, method) in
        [("/intake/api/prefill", "post"), ("/intake/api/cards", "post"), ("/intake/api/launch", "get")]
    {
        assert_eq!(document["paths"][path][method]["security"], json!([]), "{path} is open to the app");
    }
    // The open paths say so; the others inherit the bearer JWT requirement.
    for path in ["/health", "/ready", "/openapi.yaml", "/fhir/Questionnaire/{id}"] {
        assert_eq!(document["paths"][path]["get"]["security"], json!([]), "{path} is open");
    }
    assert_eq!(document["components"]["securitySchemes"]["ehrJwt"]["scheme"], "bearer");
}

#[test]
fn the_card_schema_holds_the_cds_hooks_rules() {
    let document = document();
    let card = named(&document, "Card");
    let valid = json!({
        "uuid": "5a0c2a4e-3bc4-4bd0-9a51-b0b7b3f5f9a1", "summary": "Short.", "indicator": "info",
        "source": {"label": "Popliteal", "topic": {"system": "https://popliteal.dev/CodeSystem/card-topic", "code": "baker-cyst"}},
        "suggestions": [{"label": "Order", "uuid": "0d3f1f2e-7d2a-4c55-8f63-5e5ad0f2c0b7", "isRecommended": true,
                         "actions": [{"type": "create", "description": "Order", "resource": {"resourceType": "ServiceRequest"}}]}],
        "selectionBehavior": "at-most-one"
    });
    assert!(problems(&card, &valid).is_empty(), "{:?}", problems(&card, &valid));
    let mut long = valid.clone();
    long["summary"] = json!("x".repeat(140));
    assert!(!card.is_valid(&long), "a summary of 140 characters is refused");
    long["summary"] = json!("é".repeat(139));
    assert!(card.is_valid(&long), "139 characters (not bytes) is fine");
    let mut without = valid.clone();
    without.as_object_mut().expect("object").remove("selectionBehavior");
    assert!(!card.is_valid(&without), "suggestions need a selectionBehavior");
    let mut bad = valid.clone();
    bad["indicator"] = json!("hard-stop");
    assert!(!card.is_valid(&bad));
    let mut bad = valid;
    bad["suggestions"][0]["actions"][0].as_object_mut().expect("object").remove("resource");
    assert!(!card.is_valid(&bad), "a create action carries its resource");
}

#[tokio::test]
async fn the_document_is_served_open_as_yaml() {
    let app = spawn_app().await;
    let response = app.get("/openapi.yaml").await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/yaml");
    assert_eq!(response.text().await.expect("text"), DOCUMENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vignette_response_conforms_to_the_document() {
    let document = document();
    let app = spawn_app().await;
    let now = time::OffsetDateTime::now_utc();
    let mut vignettes = load_vignettes(now);
    vignettes.extend(load_order_vignettes(now));
    assert!(vignettes.len() >= 24, "all the vignettes: {}", vignettes.len());
    let mut cards = 0;
    for vignette in vignettes {
        let path = format!("/cds-services/{}", vignette.service);
        let response = app.post_json(&path, &vignette.request).await;
        let (status, body) = conformance(&document, &path, "post", response).await;
        assert_eq!(status, 200, "{}", vignette.name);
        cards += body["cards"].as_array().map_or(0, Vec::len);
    }
    assert!(cards > 20, "the vignettes exercise many cards: {cards}");
}

#[tokio::test]
async fn discovery_health_questionnaire_feedback_and_summary_conform() {
    let document = document();
    let app = spawn_app().await;
    conformance(&document, "/cds-services", "get", app.get("/cds-services").await).await;
    conformance(&document, "/health", "get", app.get("/health").await).await;
    conformance(&document, "/ready", "get", app.get("/ready").await).await;
    conformance(&document, "/openapi.yaml", "get", app.get("/openapi.yaml").await).await;
    let questionnaire = app.get("/fhir/Questionnaire/posterior-knee-pain").await;
    conformance(&document, "/fhir/Questionnaire/{id}", "get", questionnaire).await;

    // A card shown, then feedback on it, then the summary that counts it.
    let response = app.post_json(PATIENT_VIEW, &vignette_request("dvt-likely-with-cancer-on-record")).await;
    let (_, body) = conformance(&document, PATIENT_VIEW, "post", response).await;
    let card = &body["cards"][0];
    let feedback = json!({"feedback": [
        {"card": card["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
         "outcomeTimestamp": crate::support::now_rfc3339()},
        {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-24T13:00:00+01:00",
         "overrideReason": {"reason": {"system": "https://popliteal.dev/CodeSystem/override-reason", "code": "already-assessed"},
                            "userComment": "seen"}}
    ]});
    assert!(named(&document, "Feedback").is_valid(&feedback), "the request matches the document too");
    let path = format!("{PATIENT_VIEW}/feedback");
    let (status, _) =
        conformance(&document, "/cds-services/{id}/feedback", "post", app.post_json(&path, &feedback).await).await;
    assert_eq!(status, 200);
    let summary = crate::support::eventually(std::time::Duration::from_secs(10), || async {
        let response = app.get(&format!("{PATIENT_VIEW}/feedback/summary")).await;
        let (_, body) = conformance(&document, "/cds-services/{id}/feedback/summary", "get", response).await;
        (body["cards"].as_i64() > Some(0)).then_some(body)
    })
    .await
    .expect("the audit record is written");
    assert!(summary["topics"].as_array().is_some_and(|t| !t.is_empty()), "{summary:#}");
}

#[tokio::test]
async fn error_answers_conform_to_the_operation_outcome_schema() {
    let document = document();
    let app = spawn_app().await;
    let feedback = "/cds-services/{id}/feedback";
    let summary = "/cds-services/{id}/feedback/summary";
    let mut statuses = Vec::new();
    let mut check = |status: u16| statuses.push(status);

    // 400: malformed JSON, a wrong hook, a bad feedback item, a bad summary window.
    let (status, _) =
        conformance(&document, PATIENT_VIEW, "post", app.post_raw(PATIENT_VIEW, b"{".to_vec()).await).await;
    check(status);
    let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
    request["hook"] = json!("order-sign");
    conformance(&document, PATIENT_VIEW, "post", app.post_json(PATIENT_VIEW, &request).await).await;
    let bad_item = json!({"feedback": [{"card": "x", "outcome": "accepted"}]});
    let path = format!("{PATIENT_VIEW}/feedback");
    conformance(&document, feedback, "post", app.post_json(&path, &bad_item).await).await;
    let response = app.get(&format!("{PATIENT_VIEW}/feedback/summary?from=yesterday")).await;
    let (status, _) = conformance(&document, summary, "get", response).await;
    assert_eq!(status, 400);

    // 404: an unknown service (on every operation that takes one) and an unknown Questionnaire.
    let (status, _) =
        conformance(&document, feedback, "post", app.post_json("/cds-services/nope/feedback", &bad_item).await).await;
    check(status);
    conformance(&document, summary, "get", app.get("/cds-services/nope/feedback/summary").await).await;
    conformance(&document, "/fhir/Questionnaire/{id}", "get", app.get("/fhir/Questionnaire/other").await).await;

    // 412: the intake absent.
    let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
    request["prefetch"].as_object_mut().expect("prefetch").remove("questionnaireResponses");
    let (status, _) = conformance(&document, PATIENT_VIEW, "post", app.post_json(PATIENT_VIEW, &request).await).await;
    check(status);

    // 413: a body over the limit.
    let small =
        spawn_app_with(|s| s.server.max_body_bytes = std::num::NonZeroUsize::new(2_000).expect("positive")).await;
    let request = vignette_request("baker-cyst-with-mechanical-symptoms");
    let (status, _) = conformance(&document, PATIENT_VIEW, "post", small.post_json(PATIENT_VIEW, &request).await).await;
    check(status);
    let (status, _) = conformance(&document, feedback, "post", small.post_raw(&path, vec![b' '; 3_000]).await).await;
    assert_eq!(status, 413);

    // 401: authentication on, no token (WWW-Authenticate checked as documented).
    let locked = spawn_app_with(|s| s.auth.mode = popliteal::configuration::AuthMode::Jwt).await;
    let (status, _) = conformance(&document, "/cds-services", "get", locked.get("/cds-services").await).await;
    check(status);
    conformance(&document, PATIENT_VIEW, "post", locked.post_json(PATIENT_VIEW, &request).await).await;
    let (status, _) = conformance(&document, "/openapi.yaml", "get", locked.get("/openapi.yaml").await).await;
    assert_eq!(status, 200, "the document is open");

    // 429: over the rate (Retry-After checked as documented).
    let limited = spawn_app_with(|s| {
        s.limits.requests_per_second = std::num::NonZeroU32::new(1).expect("positive");
        s.limits.burst = std::num::NonZeroU32::new(1).expect("positive");
    })
    .await;
    limited.get("/cds-services").await;
    let (status, _) = conformance(&document, "/cds-services", "get", limited.get("/cds-services").await).await;
    check(status);

    // 503: feedback and summary while the database cannot be reached.
    let down = spawn_app_with(|s| {
        s.database.url = secrecy::SecretString::from(unreachable_database_url(Backend::Sqlite));
        s.database.timeout_ms = std::num::NonZeroU64::new(300).expect("positive");
    })
    .await;
    let item = json!({"feedback": [crate::support::feedback_item(
        "5a0c2a4e-3bc4-4bd0-9a51-b0b7b3f5f9a1", "overridden", "2026-11-24T12:00:00Z")]});
    let (status, _) = conformance(&document, feedback, "post", down.post_json(&path, &item).await).await;
    check(status);
    let response = down.get(&format!("{PATIENT_VIEW}/feedback/summary")).await;
    conformance(&document, summary, "get", response).await;

    assert_eq!(statuses, [400, 404, 412, 413, 401, 429, 503]);
}

/// Strings at the edge of "not only white space": every Unicode White_Space character (what the
/// service trims), and characters one regex dialect or another counts as `\s` but Unicode does
/// not (U+FEFF for ECMA-262, U+001C..U+001F for Python), alone, repeated and next to a letter.
fn edge_strings() -> Vec<String> {
    let white: Vec<char> = (0..=0x10FFFF_u32).filter_map(char::from_u32).filter(|c| c.is_whitespace()).collect();
    assert_eq!(white.len(), 25, "Unicode's White_Space property");
    let others = ['\u{feff}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{1f}', '\u{180e}', '\u{200b}', '\u{0}', 'x'];
    let mut strings = Vec::new();
    for c in white.iter().chain(&others) {
        strings.extend([c.to_string(), format!("{c}{c}"), format!("{c}x"), format!("x{c}")]);
    }
    strings.push(white.iter().collect());
    strings
}

#[tokio::test]
async fn the_document_and_the_service_agree_on_which_strings_are_only_white_space() {
    let document = document();
    let coding = named(&document, "FeedbackCoding");
    let context = named(&document, "ContextString");
    let app = spawn_app().await;
    for text in edge_strings() {
        let blank = text.chars().all(char::is_whitespace);
        // Feedback is stored: U+0000 is refused there too (PostgreSQL cannot store it).
        let storable = !blank && !text.contains('\0');
        assert_eq!(coding.is_valid(&json!({"system": text, "code": "c"})), storable, "FeedbackCoding {text:?}");
        assert_eq!(context.is_valid(&json!(text)), !blank, "ContextString {text:?}");

        let item = json!({"card": "5a0c2a4e-3bc4-4bd0-9a51-b0b7b3f5f9a1", "outcome": "overridden",
                          "outcomeTimestamp": "2026-11-24T12:00:00Z",
                          "overrideReason": {"reason": {"system": "s", "code": text, "display": text}}});
        let response = app.post_json("/cds-services/posterior-knee-pain/feedback", &json!({"feedback": [item]})).await;
        assert_eq!(response.status().as_u16(), if storable { 200 } else { 400 }, "feedback code {text:?}");

        // A hook call with nothing to evaluate: 412 once the context is read, 400 before.
        let request = json!({"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                             "context": {"userId": text, "patientId": "p1"}});
        let response = app.post_json(PATIENT_VIEW, &request).await;
        assert_eq!(response.status().as_u16(), if blank { 400 } else { 412 }, "context.userId {text:?}");
    }
}
