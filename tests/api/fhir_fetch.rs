//! Fetching what the prefetch lacks from the EHR's FHIR server: a FHIR server on loopback
//! (a small actix app) serves a vignette's record, slowly, wrongly or in pages.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;

use crate::support::{card, load_vignettes, spawn_app_with, topics, vignette_request};

const SERVICE: &str = "/cds-services/posterior-knee-pain";
const TOKEN: &str = "test-access-token-123";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Serve,
    Slow,
    Status(u16),
    Garbage,
    Huge,
    /// Search Bundles come in two pages.
    Paged,
    /// Search Bundles hold every entry on page 1 and link to a page 2 that answers this status.
    SecondPageFails(u16),
}

#[derive(Default)]
struct Seen {
    requests: Vec<(String, Option<String>, Option<String>)>,
}

struct FakeFhir {
    base: String,
    seen: Arc<Mutex<Seen>>,
}

fn key_of(resource_type: &str) -> Option<&'static str> {
    Some(match resource_type {
        "QuestionnaireResponse" => "questionnaireResponses",
        "Condition" => "conditions",
        "Observation" => "observations",
        "MedicationRequest" => "medications",
        "ServiceRequest" => "serviceRequests",
        "Procedure" => "procedures",
        _ => return None,
    })
}

async fn respond(
    request: HttpRequest,
    prefetch: web::Data<serde_json::Value>,
    mode: web::Data<Mode>,
    seen: web::Data<Arc<Mutex<Seen>>>,
) -> HttpResponse {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    seen.lock().expect("lock").requests.push((request.uri().to_string(), header("authorization"), header("accept")));
    let mode = **mode;
    match mode {
        Mode::Slow => tokio::time::sleep(Duration::from_secs(5)).await,
        Mode::Status(code) => {
            return HttpResponse::build(actix_web::http::StatusCode::from_u16(code).expect("status")).json(
                json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]}),
            );
        }
        Mode::Garbage => return HttpResponse::Ok().content_type("text/html").body("<html>login</html>"),
        Mode::Huge => {
            let entries: Vec<serde_json::Value> = (0..20_000)
                .map(|i| json!({"resource": {"resourceType": "Condition", "id": format!("c{i}"), "subject": {"reference": "Patient/x"}}}))
                .collect();
            return HttpResponse::Ok().json(json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}));
        }
        Mode::Serve | Mode::Paged | Mode::SecondPageFails(_) => {}
    }
    let path = request.path().trim_start_matches("/fhir/");
    if let Some(id) = path.strip_prefix("Patient/") {
        let patient = &prefetch["patient"];
        return if patient["id"] == id { HttpResponse::Ok().json(patient) } else { HttpResponse::NotFound().finish() };
    }
    let (page, resource_type) = match path.strip_prefix("page2/") {
        Some(rest) => (2, rest),
        None => (1, path),
    };
    let Some(key) = key_of(resource_type) else {
        return HttpResponse::NotFound().finish();
    };
    let mut bundle = prefetch[key].clone();
    let base = format!("http://{}", request.connection_info().host());
    if let Mode::SecondPageFails(code) = mode {
        if page == 2 {
            return HttpResponse::build(actix_web::http::StatusCode::from_u16(code).expect("status")).finish();
        }
        bundle["link"] = json!([{"relation": "next", "url": format!("{base}/fhir/page2/{resource_type}")}]);
        return HttpResponse::Ok().json(bundle);
    }
    if mode != Mode::Paged {
        return HttpResponse::Ok().json(bundle);
    }
    // Page 1 holds no entries and a next link; page 2 holds them all.
    if page == 1 {
        HttpResponse::Ok().json(json!({
            "resourceType": "Bundle", "type": "searchset",
            "link": [{"relation": "next", "url": format!("{base}/fhir/page2/{resource_type}")}],
            "entry": []
        }))
    } else {
        HttpResponse::Ok().json(bundle)
    }
}

async fn fake_fhir(prefetch: serde_json::Value, mode: Mode) -> FakeFhir {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let data = (web::Data::new(prefetch), web::Data::new(mode), web::Data::new(seen.clone()));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.0.clone())
            .app_data(data.1.clone())
            .app_data(data.2.clone())
            .default_service(web::to(respond))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    FakeFhir { base: format!("http://127.0.0.1:{port}/fhir"), seen }
}

/// The vignette's request with the given prefetch keys removed and the fake server named.
fn without(mut request: serde_json::Value, keys: &[&str], server: &FakeFhir) -> serde_json::Value {
    let prefetch = request["prefetch"].as_object_mut().expect("prefetch");
    for key in keys {
        prefetch.remove(*key);
    }
    request["fhirServer"] = json!(server.base);
    request["fhirAuthorization"] = json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "cds"});
    request
}

const ALL_KEYS: &[&str] = &[
    "patient",
    "questionnaireResponses",
    "conditions",
    "observations",
    "medications",
    "serviceRequests",
    "procedures",
];
const OPTIONAL_KEYS: &[&str] = &["conditions", "observations", "medications", "serviceRequests", "procedures"];

/// What must be equal between two answers (uuids differ).
fn essence(response: &serde_json::Value) -> serde_json::Value {
    let cards: Vec<serde_json::Value> = response["cards"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "topic": c["source"]["topic"]["code"], "indicator": c["indicator"], "summary": c["summary"],
                "detail": c["detail"], "wells": c["extension"],
                "orders": c["suggestions"].as_array().into_iter().flatten().map(|s| s["actions"][0]["resource"]["code"].clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!(cards)
}

async fn post(app: &crate::support::TestApp, request: &serde_json::Value) -> (u16, serde_json::Value) {
    let response = app.post_json(SERVICE, request).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_request_without_prefetch_gets_the_same_cards_as_the_same_data_prefetched() {
    let app = spawn_app_with(|_| {}).await;
    let vignettes = load_vignettes(time::OffsetDateTime::now_utc());
    assert!(vignettes.len() >= 14);
    for vignette in vignettes {
        let server = fake_fhir(vignette.request["prefetch"].clone(), Mode::Serve).await;
        let (status_prefetched, prefetched) = post(&app, &vignette.request).await;
        let (status_fetched, fetched) = post(&app, &without(vignette.request.clone(), ALL_KEYS, &server)).await;
        assert_eq!(status_prefetched, status_fetched, "{}", vignette.name);
        assert_eq!(essence(&prefetched), essence(&fetched), "{}", vignette.name);
        let seen = server.seen.lock().expect("lock");
        assert_eq!(seen.requests.len(), 7, "{}: one read per key", vignette.name);
        for (uri, authorization, accept) in &seen.requests {
            assert_eq!(authorization.as_deref(), Some(format!("Bearer {TOKEN}").as_str()), "{uri}");
            assert!(accept.as_deref().is_some_and(|a| a.contains("application/fhir+json")), "{uri}");
        }
        assert!(seen.requests.iter().any(|(uri, _, _)| uri.starts_with("/fhir/Patient/")));
        assert!(seen.requests.iter().any(|(uri, _, _)| uri.contains("QuestionnaireResponse?subject=Patient/")));
    }
}

#[tokio::test]
async fn a_slow_fhir_server_is_cut_off_at_the_budget_and_the_cards_come_from_what_was_sent() {
    let app = spawn_app_with(|s| s.fhir.fetch_budget_ms = std::num::NonZeroU64::new(300).expect("positive")).await;
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let server = fake_fhir(request["prefetch"].clone(), Mode::Slow).await;
    let started = Instant::now();
    let (status, body) = post(&app, &without(request.clone(), OPTIONAL_KEYS, &server)).await;
    assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
    assert_eq!(status, 200);
    assert!(topics(&body).contains(&"dvt-suspected".to_owned()));
    let detail = card(&body, "data-unavailable")["detail"].as_str().expect("detail").to_owned();
    assert!(detail.contains("conditions"), "{detail}");
    // Without the intake, nothing can be said: 412, still within the budget.
    let started = Instant::now();
    let (status, _) = post(&app, &without(request, ALL_KEYS, &server)).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(status, 412);
}

#[tokio::test]
async fn fhir_server_errors_and_garbage_leave_the_data_unavailable_not_the_service_down() {
    let app = spawn_app_with(|_| {}).await;
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    for mode in
        [Mode::Status(401), Mode::Status(403), Mode::Status(404), Mode::Status(500), Mode::Status(503), Mode::Garbage]
    {
        let server = fake_fhir(request["prefetch"].clone(), mode).await;
        let (status, body) = post(&app, &without(request.clone(), OPTIONAL_KEYS, &server)).await;
        assert_eq!(status, 200);
        let detail = card(&body, "data-unavailable")["detail"].as_str().expect("detail").to_owned();
        for key in ["conditions", "observations", "medication orders", "procedures"] {
            assert!(detail.contains(key), "{key} in {detail}");
        }
        // The cancer on the record could not be read: the item is not assessed.
        assert_eq!(card(&body, "dvt-suspected")["extension"]["dev.popliteal.wells"]["complete"], false);
        let (status, outcome) = post(&app, &without(request.clone(), ALL_KEYS, &server)).await;
        assert_eq!(status, 412);
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
}

#[tokio::test]
async fn a_huge_bundle_is_refused_at_the_size_limit() {
    let app =
        spawn_app_with(|s| s.fhir.max_response_bytes = std::num::NonZeroUsize::new(200_000).expect("positive")).await;
    let request = vignette_request("baker-cyst-with-mechanical-symptoms");
    let server = fake_fhir(request["prefetch"].clone(), Mode::Huge).await;
    let (status, body) = post(&app, &without(request, &["conditions"], &server)).await;
    assert_eq!(status, 200);
    assert!(card(&body, "data-unavailable")["detail"].as_str().expect("detail").contains("conditions"));
    assert!(topics(&body).contains(&"baker-cyst".to_owned()));
}

#[tokio::test]
async fn next_links_are_followed_up_to_the_page_cap() {
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let app = spawn_app_with(|_| {}).await;
    let server = fake_fhir(request["prefetch"].clone(), Mode::Paged).await;
    let (status, body) = post(&app, &without(request.clone(), OPTIONAL_KEYS, &server)).await;
    assert_eq!(status, 200);
    // The cancer Condition is on page 2: it scores.
    let wells = &card(&body, "dvt-suspected")["extension"]["dev.popliteal.wells"];
    assert_eq!(wells["score"], 3, "{body:#}");
    assert!(!topics(&body).contains(&"data-unavailable".to_owned()));

    let capped = spawn_app_with(|s| s.fhir.page_cap = std::num::NonZeroUsize::new(1).expect("positive")).await;
    let (status, body) = post(&capped, &without(request, OPTIONAL_KEYS, &server)).await;
    assert_eq!(status, 200);
    assert_eq!(card(&body, "dvt-suspected")["extension"]["dev.popliteal.wells"]["score"], 2);
    let detail = card(&body, "data-unavailable")["detail"].as_str().expect("detail").to_owned();
    assert!(detail.contains("Read in part"), "{detail}");
}

#[tokio::test]
async fn pages_already_read_stay_when_a_later_page_fails_and_the_key_is_reported_as_read_in_part() {
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let server = fake_fhir(request["prefetch"].clone(), Mode::SecondPageFails(503)).await;
    let app = spawn_app_with(|_| {}).await;
    // The intake itself comes from the server: its first page is readable, its second is not.
    let (status, body) = post(&app, &without(request, &["questionnaireResponses", "conditions"], &server)).await;
    assert_eq!(status, 200, "a readable intake on page 1 is not a 412: {body:#}");
    let dvt = card(&body, "dvt-suspected");
    assert_eq!(dvt["extension"]["dev.popliteal.wells"]["score"], 3, "the cancer Condition of page 1 counts");
    let detail = card(&body, "data-unavailable")["detail"].as_str().expect("detail").to_owned();
    assert!(detail.contains("Read in part"), "{detail}");
    assert!(detail.contains("intake questionnaire responses") && detail.contains("conditions"), "{detail}");
    let seen = server.seen.lock().expect("lock");
    assert!(seen.requests.iter().any(|(uri, _, _)| uri.contains("page2/QuestionnaireResponse")));
}

#[tokio::test]
async fn a_prefetch_bundle_with_a_next_link_is_completed_from_the_server() {
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let server = fake_fhir(request["prefetch"].clone(), Mode::Serve).await;
    let mut partial = without(request, &[], &server);
    partial["prefetch"]["conditions"] = json!({
        "resourceType": "Bundle", "type": "searchset",
        "link": [{"relation": "next", "url": format!("{}/Condition?page=2", server.base)}],
        "entry": []
    });
    let app = spawn_app_with(|_| {}).await;
    let (status, body) = post(&app, &partial).await;
    assert_eq!(status, 200);
    assert_eq!(card(&body, "dvt-suspected")["extension"]["dev.popliteal.wells"]["score"], 3);
    assert!(server.seen.lock().expect("lock").requests.iter().any(|(uri, _, _)| uri.contains("page=2")));
}

#[tokio::test]
async fn the_token_is_never_sent_to_an_origin_that_is_not_allowed() {
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    // (Plain http outside local and test is refused by the fetch policy: unit-tested in
    // `configuration` and `fhir::fetch`.)
    let server = fake_fhir(request["prefetch"].clone(), Mode::Serve).await;
    // An explicit allowlist that does not name the server.
    let listed = spawn_app_with(|s| {
        s.fhir.allowed_origins = vec![
            popliteal::configuration::BareOrigin::try_from("https://ehr.example.org".to_owned()).expect("an origin"),
        ]
    })
    .await;
    let (status, _) = post(&listed, &without(request.clone(), ALL_KEYS, &server)).await;
    assert_eq!(status, 412);
    assert!(server.seen.lock().expect("lock").requests.is_empty());

    // A next link to another origin is not followed.
    let elsewhere = fake_fhir(request["prefetch"].clone(), Mode::Serve).await;
    let mut partial = without(request, &[], &server);
    partial["prefetch"]["conditions"] = json!({
        "resourceType": "Bundle", "type": "searchset",
        "link": [{"relation": "next", "url": format!("{}/Condition?page=2", elsewhere.base)}],
        "entry": []
    });
    let app = spawn_app_with(|_| {}).await;
    let (status, body) = post(&app, &partial).await;
    assert_eq!(status, 200);
    assert!(elsewhere.seen.lock().expect("lock").requests.is_empty(), "the token went to another origin");
    assert!(card(&body, "data-unavailable")["detail"].as_str().expect("detail").contains("Read in part"));
}

#[tokio::test]
async fn without_a_fhir_server_a_missing_required_key_is_412_and_a_missing_optional_key_a_card() {
    let app = spawn_app_with(|_| {}).await;
    let mut request = vignette_request("baker-cyst-with-mechanical-symptoms");
    request["prefetch"].as_object_mut().expect("prefetch").remove("procedures");
    let (status, body) = post(&app, &request).await;
    assert_eq!(status, 200);
    assert!(card(&body, "data-unavailable")["detail"].as_str().expect("detail").contains("procedures"));
}

#[tokio::test]
async fn a_request_that_does_not_fit_its_service_is_refused_before_anything_is_read_from_the_ehr() {
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let server = fake_fhir(request["prefetch"].clone(), Mode::Serve).await;
    let app = spawn_app_with(|_| {}).await;
    // A patient-view request sent to the order-sign service (which needs order-sign and draft
    // orders), with every key left to the FHIR server.
    let response = app
        .post_json("/cds-services/posterior-knee-pain-order-sign", &without(request.clone(), ALL_KEYS, &server))
        .await;
    assert_eq!(response.status().as_u16(), 400);
    // A Patient in the prefetch that is not the context's patient.
    let mut other = without(request, &["conditions"], &server);
    other["prefetch"]["patient"]["id"] = json!("someone-else");
    let (status, _) = post(&app, &other).await;
    assert_eq!(status, 400);
    assert!(server.seen.lock().expect("lock").requests.is_empty(), "PHI was fetched for a request refused anyway");
}
