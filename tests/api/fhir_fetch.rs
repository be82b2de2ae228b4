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
    /// Every search answers a page of about `HUGE_PAGE_BYTES` linking to the next, without end.
    EndlessHugePages,
}

/// The size of one page in `Mode::EndlessHugePages`.
const HUGE_PAGE_BYTES: usize = 1024 * 1024;

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
        Mode::EndlessHugePages => {
            let base = format!("http://{}", request.connection_info().host());
            let page: usize = request.query_string().strip_prefix("page=").and_then(|n| n.parse().ok()).unwrap_or(1);
            let next = format!("{base}{}?page={}", request.path(), page + 1);
            return HttpResponse::Ok().json(json!({
                "resourceType": "Bundle", "type": "searchset",
                "link": [{"relation": "next", "url": next}],
                "entry": [{"resource": {"resourceType": "Basic", "id": format!("padding-{page}"),
                    "text": {"status": "generated", "div": "x".repeat(HUGE_PAGE_BYTES)}}}]
            }));
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

#[tokio::test]
async fn a_next_link_or_fhir_server_with_a_user_name_and_password_is_never_followed() {
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let server = fake_fhir(request["prefetch"].clone(), Mode::Serve).await;
    let app = spawn_app_with(|_| {}).await;
    let with_credentials = server.base.replace("http://", "http://someone:secret@");
    let mut partial = without(request.clone(), &[], &server);
    partial["prefetch"]["conditions"] = json!({
        "resourceType": "Bundle", "type": "searchset",
        "link": [{"relation": "next", "url": format!("{with_credentials}/Condition?page=2")}],
        "entry": []
    });
    let (status, body) = post(&app, &partial).await;
    assert_eq!(status, 200);
    assert!(card(&body, "data-unavailable")["detail"].as_str().expect("detail").contains("Read in part"));

    let mut everything_fetched = without(request, ALL_KEYS, &server);
    everything_fetched["fhirServer"] = json!(with_credentials);
    let (status, _) = post(&app, &everything_fetched).await;
    assert_eq!(status, 412, "nothing can be read: the intake is missing");
    assert!(server.seen.lock().expect("lock").requests.is_empty(), "no request was made with the link's credentials");
}

/// The service, with the process's byte budget kept to look at.
async fn spawn_app_keeping_fetch_budget(
    adjust: impl FnOnce(&mut popliteal::configuration::Settings),
) -> (crate::support::TestApp, std::sync::Arc<popliteal::fhir::budget::ByteBudget>) {
    let settings = crate::support::test_settings(adjust);
    let application = popliteal::startup::Application::build(&settings).expect("the application starts");
    let budget = application.fetch_budget();
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    (crate::support::TestApp { address, client: reqwest::Client::new() }, budget)
}

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn one_call_reads_no_more_than_its_byte_cap_from_a_server_that_pages_without_end() {
    let (app, budget) = spawn_app_keeping_fetch_budget(|s| {
        s.fhir.max_response_bytes = std::num::NonZeroUsize::new(2 * MIB).expect("positive");
        s.fhir.max_bytes_per_call = std::num::NonZeroUsize::new(3 * MIB).expect("positive");
        s.fhir.max_bytes_in_flight = std::num::NonZeroUsize::new(64 * MIB).expect("positive");
        s.fhir.page_cap = std::num::NonZeroUsize::new(25).expect("positive");
        s.fhir.fetch_budget_ms = std::num::NonZeroU64::new(10_000).expect("positive");
    })
    .await;
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let server = fake_fhir(request["prefetch"].clone(), Mode::EndlessHugePages).await;
    let (status, body) = post(&app, &without(request, &["conditions"], &server)).await;
    assert_eq!(status, 200);
    assert!(card(&body, "data-unavailable")["detail"].as_str().expect("detail").contains("conditions"));
    let pages = server.seen.lock().expect("lock").requests.len();
    assert!(pages <= 3, "{pages} pages of 1 MiB were asked for against a cap of 3 MiB");
    assert!(budget.peak() <= 3 * MIB, "held at most the call's cap: {}", budget.peak());
    assert_eq!(budget.in_use(), 0, "the call gave its bytes back");
}

#[tokio::test]
async fn calls_fetching_at_once_share_one_byte_budget_so_memory_stays_bounded() {
    let (app, budget) = spawn_app_keeping_fetch_budget(|s| {
        s.fhir.max_response_bytes = std::num::NonZeroUsize::new(2 * MIB).expect("positive");
        s.fhir.max_bytes_per_call = std::num::NonZeroUsize::new(3 * MIB).expect("positive");
        s.fhir.max_bytes_in_flight = std::num::NonZeroUsize::new(4 * MIB).expect("positive");
        s.fhir.page_cap = std::num::NonZeroUsize::new(25).expect("positive");
        s.fhir.fetch_budget_ms = std::num::NonZeroU64::new(3_000).expect("positive");
    })
    .await;
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let server = fake_fhir(request["prefetch"].clone(), Mode::EndlessHugePages).await;
    let call = without(request, OPTIONAL_KEYS, &server);
    let calls = (0..3).map(|_| post(&app, &call));
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
        assert!(topics(&body).contains(&"data-unavailable".to_owned()));
    }
    // Three calls of five keys each would hold 9 MiB or more without the shared budget.
    assert!(budget.peak() <= 4 * MIB, "peak {} bytes over a budget of 4 MiB", budget.peak());
    assert!(budget.peak() >= MIB, "the calls did read: {}", budget.peak());
    assert_eq!(budget.in_use(), 0);
}

/// The production fetch policy and client, as `Application::build` makes them.
fn production_fhir_client(allowed_origins: &[String]) -> popliteal::fhir::fetch::FhirClient {
    let mut variables = config::Map::new();
    variables
        .insert("POPLITEAL__AUDIT__PATIENT_HASH_KEY".to_owned(), "a-test-key-of-at-least-32-characters!!".to_owned());
    if !allowed_origins.is_empty() {
        variables.insert("POPLITEAL__FHIR__ALLOWED_ORIGINS".to_owned(), allowed_origins.join(","));
    }
    let settings = popliteal::configuration::Settings::load_with_variables(
        "production",
        &popliteal::configuration::configuration_directory().expect("the config folder"),
        Some(variables),
    )
    .expect("production settings");
    let policy = popliteal::fhir::fetch::FetchPolicy::from_settings(&settings.fhir, settings.environment);
    popliteal::fhir::fetch::FhirClient::new(policy).expect("a client")
}

/// A TCP listener that counts the connections made to it.
async fn counting_listener() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, accepted)
}

async fn provenance_fetching_from(fhir_server: &str, client: &popliteal::fhir::fetch::FhirClient) -> Vec<String> {
    let mut request = vignette_request("dvt-likely-with-cancer-on-record");
    request["prefetch"].as_object_mut().expect("prefetch").remove("conditions");
    request["fhirServer"] = json!(fhir_server);
    request["fhirAuthorization"] = json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "cds"});
    let request = popliteal::protocol::request::HookRequest::parse(&serde_json::to_vec(&request).expect("JSON"))
        .expect("a valid request");
    let catalogue = popliteal::catalogue::Catalogue::embedded().expect("the catalogue");
    let service = catalogue.find("posterior-knee-pain").expect("the service");
    let metrics = popliteal::telemetry::Metrics::default();
    let record = popliteal::fhir::assembly::assemble(&request, catalogue.templates(service), client, &metrics).await;
    record.provenance.iter().map(|(key, provenance)| format!("{}={}", key.prefetch_key(), provenance.code())).collect()
}

#[tokio::test]
async fn production_never_connects_to_a_fhir_server_at_a_private_address_unless_its_origin_is_listed() {
    let (port, accepted) = counting_listener().await;
    let client = production_fhir_client(&[]);
    for server in [
        format!("https://127.0.0.1:{port}/fhir"),
        format!("https://localhost:{port}/fhir"),
        "https://169.254.169.254/fhir".to_owned(),
        format!("https://[::ffff:127.0.0.1]:{port}/fhir"),
    ] {
        let provenance = provenance_fetching_from(&server, &client).await;
        assert!(provenance.contains(&"conditions=failed:address-not-public".to_owned()), "{server}: {provenance:?}");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0, "no connection was made");

    // Listed by the operator: connected to (the TLS handshake then fails on this plain listener).
    let listed = production_fhir_client(&[format!("https://127.0.0.1:{port}")]);
    let provenance = provenance_fetching_from(&format!("https://127.0.0.1:{port}/fhir"), &listed).await;
    assert!(provenance.contains(&"conditions=failed:network".to_owned()), "{provenance:?}");
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) > 0);
}
