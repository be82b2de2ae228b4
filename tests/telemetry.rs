//! Telemetry, end to end, in a process of its own (the tracing subscriber and the meter provider
//! are global): every vignette (patient-view and order hooks) is sent through HTTP, with an EHR
//! FHIR server and an OTLP receiver on loopback (one small actix app), one call carrying an
//! incoming `traceparent` and lacking two prefetch keys, and one feedback item with a comment.
//! What telemetry saw is captured three ways: a tracing layer that records every span and event
//! field, the SDK's in-memory span and metric exporters, and the OTLP requests the receiver got.

mod support;

use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader};
use opentelemetry_sdk::trace::InMemorySpanExporter;
use popliteal::startup::Application;
use popliteal::telemetry::Telemetry;
use serde_json::json;
use support::{Vignette, load_order_vignettes, load_vignettes, test_settings};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

const TOKEN: &str = "phi-test-access-token-5f2c9a7e";
const COMMENT: &str = "Pat Example's daughter says the swelling began on her birthday";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Every span name and field, every event field, as `name=value` text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Visitor<'a>(&'a mut Vec<String>);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push(format!("{}={value}", field.name()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attributes: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: Context<'_, S>) {
        let mut seen = self.0.lock().expect("lock");
        seen.push(attributes.metadata().name().to_owned());
        attributes.record(&mut Visitor(&mut seen));
    }

    fn on_record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>, _: Context<'_, S>) {
        values.record(&mut Visitor(&mut self.0.lock().expect("lock")));
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut seen = self.0.lock().expect("lock");
        seen.push(event.metadata().name().to_owned());
        event.record(&mut Visitor(&mut seen));
    }
}

/// What the loopback server (FHIR server and OTLP receiver) was sent.
#[derive(Default)]
struct Received {
    /// (path, body) of each OTLP export.
    otlp: Vec<(String, Vec<u8>)>,
    /// (path, traceparent) of each FHIR request.
    fhir: Vec<(String, Option<String>)>,
}

type Shared = web::Data<Arc<Mutex<Received>>>;

async fn otlp(request: HttpRequest, body: web::Bytes, received: Shared) -> HttpResponse {
    received.lock().expect("lock").otlp.push((request.path().to_owned(), body.to_vec()));
    HttpResponse::Ok().content_type("application/x-protobuf").finish()
}

/// Empty search Bundles; `Procedure` fails with 500, a Patient read is not found.
async fn fhir(request: HttpRequest, received: Shared) -> HttpResponse {
    let traceparent = request.headers().get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned);
    received.lock().expect("lock").fhir.push((request.path().to_owned(), traceparent));
    let path = request.path().trim_start_matches("/fhir/");
    if path.starts_with("Procedure") {
        return HttpResponse::InternalServerError().finish();
    }
    if path.starts_with("Patient/") {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type("application/fhir+json")
        .json(json!({"resourceType": "Bundle", "type": "searchset", "entry": []}))
}

struct Run {
    /// Every string telemetry carried: tracing fields, exported span and metric data.
    seen: Vec<String>,
    /// The secrets of the requests sent.
    forbidden: Vec<String>,
    received: Arc<Mutex<Received>>,
    span_names: Vec<String>,
    metric_names: Vec<String>,
    /// The trace ids of the spans exported in memory, by span name.
    traces: Vec<(String, String)>,
    /// The log lines, as the service writes them (JSON).
    log: String,
    _telemetry: Telemetry,
    _runtime: tokio::runtime::Runtime,
}

/// String leaves that are content (not resource types, code systems, statuses or word codes).
fn content_strings(value: &serde_json::Value, key: &str, found: &mut Vec<String>) {
    const NOT_CONTENT: &[&str] = &["resourceType", "type", "status", "system", "url", "questionnaire", "intent"];
    match value {
        serde_json::Value::String(text) => {
            let word_code = key == "code" && text.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            if text.chars().count() >= 6 && !NOT_CONTENT.contains(&key) && !word_code {
                found.push(text.clone());
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| content_strings(item, key, found)),
        serde_json::Value::Object(map) => map.iter().for_each(|(key, item)| content_strings(item, key, found)),
        _ => {}
    }
}

/// What must never appear in telemetry: the patient's name, birth date and id, the token, the
/// answers and every other piece of content of the prefetch and the draft orders.
fn secrets_of(request: &serde_json::Value, forbidden: &mut Vec<String>) {
    let patient = &request["prefetch"]["patient"];
    for name in patient["name"].as_array().into_iter().flatten() {
        let given: Vec<&str> = name["given"].as_array().into_iter().flatten().filter_map(|g| g.as_str()).collect();
        let family = name["family"].as_str().unwrap_or_default();
        forbidden.push(format!("{} {family}", given.join(" ")).trim().to_owned());
        forbidden.push(family.to_owned());
    }
    if let Some(birth) = patient["birthDate"].as_str() {
        forbidden.push(birth.to_owned());
    }
    if let Some(id) = request["context"]["patientId"].as_str() {
        forbidden.push(id.to_owned());
    }
    content_strings(&request["prefetch"], "prefetch", forbidden);
    content_strings(&request["context"]["draftOrders"], "draftOrders", forbidden);
}

fn metric_strings(metrics: &[ResourceMetrics], seen: &mut Vec<String>, names: &mut Vec<String>) {
    fn points<T>(data: &MetricData<T>) -> Vec<String> {
        let attributes: Vec<&opentelemetry::KeyValue> = match data {
            MetricData::Gauge(gauge) => gauge.data_points().flat_map(|p| p.attributes()).collect(),
            MetricData::Sum(sum) => sum.data_points().flat_map(|p| p.attributes()).collect(),
            MetricData::Histogram(histogram) => histogram.data_points().flat_map(|p| p.attributes()).collect(),
            MetricData::ExponentialHistogram(histogram) => {
                histogram.data_points().flat_map(|p| p.attributes()).collect()
            }
        };
        attributes.iter().map(|kv| format!("{}={}", kv.key, kv.value)).collect()
    }
    for resource in metrics {
        seen.extend(resource.resource().iter().map(|(key, value)| format!("{key}={value}")));
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                names.push(metric.name().to_owned());
                seen.push(metric.name().to_owned());
                seen.extend(match metric.data() {
                    AggregatedMetrics::F64(data) => points(data),
                    AggregatedMetrics::U64(data) => points(data),
                    AggregatedMetrics::I64(data) => points(data),
                });
            }
        }
    }
}

async fn send_everything(address: &str, fhir_base: &str, vignettes: Vec<Vignette>, forbidden: &mut Vec<String>) {
    let client = reqwest::Client::new();
    let mut a_card = None;
    for vignette in vignettes {
        let mut request = vignette.request.clone();
        request["fhirServer"] = json!(fhir_base);
        request["fhirAuthorization"] = json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "popliteal"});
        secrets_of(&request, forbidden);
        let response = client
            .post(format!("{address}/cds-services/{}", vignette.service))
            .json(&request)
            .send()
            .await
            .expect("the hook call is answered");
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if a_card.is_none() {
            a_card = body["cards"][0]["uuid"].as_str().map(str::to_owned);
        }
    }
    // An EHR that traces: its traceparent comes in, and goes on to its FHIR server with the fetches
    // of the two keys the prefetch lacks (conditions are read, procedures fail).
    let mut request = support::vignette_request("dvt-likely-with-cancer-on-record");
    let prefetch = request["prefetch"].as_object_mut().expect("a prefetch");
    prefetch.remove("conditions");
    prefetch.remove("procedures");
    request["fhirServer"] = json!(fhir_base);
    request["fhirAuthorization"] = json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "popliteal"});
    secrets_of(&request, forbidden);
    let response = client
        .post(format!("{address}/cds-services/posterior-knee-pain"))
        .header("traceparent", TRACEPARENT)
        .json(&request)
        .send()
        .await
        .expect("the hook call is answered");
    assert_eq!(response.status().as_u16(), 200);
    // Feedback with a comment that names the patient.
    let card = a_card.expect("some vignette has cards");
    let now = support::now_rfc3339();
    let feedback = json!({"feedback": [{"card": card, "outcome": "overridden", "outcomeTimestamp": now,
                                        "overrideReason": {"userComment": COMMENT}}]});
    let response = client
        .post(format!("{address}/cds-services/posterior-knee-pain/feedback"))
        .json(&feedback)
        .send()
        .await
        .expect("the feedback is answered");
    assert_eq!(response.status().as_u16(), 200);
    forbidden.push(COMMENT.to_owned());
    forbidden.push(TOKEN.to_owned());
}

/// The intake app's record calls, with the app's token, a patient and a user of their own (the
/// FHIR server does not find the Patient: the calls are refused with 412, after reading).
async fn send_intake(address: &str, fhir_base: &str, forbidden: &mut Vec<String>) {
    let client = reqwest::Client::new();
    let access = json!({
        "fhirServer": fhir_base, "patientId": "intake-patient-7c1e", "userId": "Practitioner/intake-user-3b9d",
        "accessToken": TOKEN,
    });
    let mut with_response = access.clone();
    with_response["questionnaireResponse"] = json!({
        "resourceType": "QuestionnaireResponse", "status": "completed",
        "subject": { "reference": "Patient/intake-patient-7c1e" },
        "item": [{ "linkId": "rf-calf-pain", "answer": [{ "valueBoolean": true }] }]
    });
    for (path, body) in [("/intake/api/prefill", access), ("/intake/api/cards", with_response)] {
        let response = client.post(format!("{address}{path}")).json(&body).send().await.expect("answered");
        assert_eq!(response.status().as_u16(), 412, "{path}: the Patient is not found");
        let text = response.text().await.expect("a body");
        assert!(!text.contains(TOKEN) && !text.contains("intake-patient-7c1e"), "{path}: {text}");
    }
    forbidden.extend(["intake-patient-7c1e".to_owned(), "intake-user-3b9d".to_owned()]);
}

/// Text a client chose, in every place of a request that could reach a log line.
const SENTINEL: &str = "MalformedSentinel";

/// Log lines, kept in memory.
#[derive(Clone, Default)]
struct LogLines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogLines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Requests refused as before, each carrying client text where the log might pick it up: an
/// unknown hook (which passes the envelope's sanitiser), service ids the catalogue does not
/// have, a query string, a user agent, forwarding headers.
async fn send_client_text(address: &str) {
    let client = reqwest::Client::new();
    let mut request = support::vignette_request("dvt-likely-with-cancer-on-record");
    request["hook"] = json!(format!("order-{SENTINEL}-XYZ"));
    let send = |path: String, body: serde_json::Value| {
        client
            .post(format!("{address}{path}"))
            .header("user-agent", format!("{SENTINEL}-agent/1.0"))
            .header("x-forwarded-for", format!("{SENTINEL}-forwarded"))
            .header("forwarded", format!("for={SENTINEL}-for;proto={SENTINEL}"))
            .json(&body)
            .send()
    };
    let wrong_hook = send("/cds-services/posterior-knee-pain".into(), request.clone()).await.expect("answered");
    assert_eq!(wrong_hook.status().as_u16(), 400, "a hook the service does not answer is refused");
    let unknown = send(format!("/cds-services/{SENTINEL}-service?x={SENTINEL}"), request).await.expect("answered");
    assert_eq!(unknown.status().as_u16(), 404);
    let feedback = send(format!("/cds-services/{SENTINEL}-service/feedback"), json!({"feedback": []}));
    assert_eq!(feedback.await.expect("answered").status().as_u16(), 404);
    let nowhere = send(format!("/{SENTINEL}/path"), json!({})).await.expect("answered");
    assert_eq!(nowhere.status().as_u16(), 404);
    let launch = client.get(format!("{address}/intake/api/launch?iss=https://{SENTINEL}.example/fhir")).send();
    assert_eq!(launch.await.expect("answered").status().as_u16(), 403, "an EHR that is not registered");
    let asset = client.get(format!("{address}/intake/{SENTINEL}.js")).send().await.expect("answered");
    assert_eq!(asset.status().as_u16(), 404);
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
        let received = Arc::new(Mutex::new(Received::default()));
        let shared = received.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let base = format!("http://127.0.0.1:{}", listener.local_addr().expect("an address").port());
        runtime.block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(shared.clone()))
                    .app_data(web::PayloadConfig::new(64 << 20))
                    .route("/v1/traces", web::post().to(otlp))
                    .route("/v1/metrics", web::post().to(otlp))
                    .default_service(web::to(fhir))
            })
            .workers(1)
            .listen(listener)
            .expect("listens")
            .run();
            tokio::spawn(server);
        });

        // The production pipeline (OTLP to the receiver), plus in-memory exporters.
        let settings = test_settings(|settings| {
            settings.telemetry.otlp_endpoint = Some(base.clone().try_into().expect("a URL"));
            settings.telemetry.metrics_interval_ms = std::num::NonZeroU64::new(3_600_000).expect("positive");
            settings.intake.clients = vec![support::intake_client(&format!("{base}/fhir"), "popliteal-intake")];
        });
        let spans = InMemorySpanExporter::default();
        let metrics = InMemoryMetricExporter::default();
        let (span_sink, metric_sink) = (spans.clone(), metrics.clone());
        let telemetry = Telemetry::start_with(&settings, move |(traces, meters)| {
            (traces.with_simple_exporter(span_sink), meters.with_reader(PeriodicReader::builder(metric_sink).build()))
        })
        .expect("telemetry starts");
        assert!(telemetry.is_exporting());
        let capture = Capture::default();
        let log = LogLines::default();
        let lines = log.clone();
        tracing_subscriber::registry()
            .with(capture.clone())
            .with(popliteal::telemetry::log_layer(&settings.log, move || lines.clone()))
            .with(telemetry.layer())
            .with(tracing_subscriber::EnvFilter::new("info,popliteal=trace"))
            .try_init()
            .expect("the only subscriber of this process");

        let now = time::OffsetDateTime::now_utc();
        let mut vignettes = load_vignettes(now);
        vignettes.extend(load_order_vignettes(now));
        let mut forbidden = Vec::new();
        runtime.block_on(async {
            let application = Application::build(&settings).expect("the application starts");
            let address = format!("http://127.0.0.1:{}", application.port());
            tokio::spawn(application.run_until_stopped());
            send_everything(&address, &format!("{base}/fhir"), vignettes, &mut forbidden).await;
            send_intake(&address, &format!("{base}/fhir"), &mut forbidden).await;
            send_client_text(&address).await;
            // The audit writer stores in the background: wait until it has written.
            let written = support::eventually(Duration::from_secs(10), || async {
                let ready: serde_json::Value =
                    reqwest::get(format!("{address}/ready")).await.ok()?.json().await.ok()?;
                (ready["audit"]["written"].as_u64() > Some(0)).then_some(())
            })
            .await;
            assert!(written.is_some(), "the audit writer wrote nothing within 10 s");
        });
        telemetry.flush();

        let mut seen = capture.0.lock().expect("lock").clone();
        let mut span_names = Vec::new();
        let mut traces = Vec::new();
        for span in spans.get_finished_spans().expect("spans") {
            span_names.push(span.name.to_string());
            traces.push((span.name.to_string(), span.span_context.trace_id().to_string()));
            seen.push(span.name.to_string());
            seen.push(format!("{:?}", span.status));
            seen.extend(span.attributes.iter().map(|kv| format!("{}={}", kv.key, kv.value)));
            for event in span.events.iter() {
                seen.push(event.name.to_string());
                seen.extend(event.attributes.iter().map(|kv| format!("{}={}", kv.key, kv.value)));
            }
        }
        let mut metric_names = Vec::new();
        metric_strings(&metrics.get_finished_metrics().expect("metrics"), &mut seen, &mut metric_names);
        forbidden.sort();
        forbidden.dedup();
        forbidden.retain(|secret| !secret.is_empty());
        let log = String::from_utf8_lossy(&log.0.lock().expect("lock")).into_owned();
        Run {
            seen,
            forbidden,
            received,
            span_names,
            metric_names,
            traces,
            log,
            _telemetry: telemetry,
            _runtime: runtime,
        }
    })
}

#[test]
fn no_patient_data_token_or_comment_reaches_spans_events_or_metrics() {
    let run = run();
    // The capture works: it saw the spans and fields telemetry does carry.
    for expected in ["evaluate rules", "build cards", "assemble record", "fetch FHIR data", "hook_instance="] {
        assert!(run.seen.iter().any(|text| text.contains(expected)), "telemetry never carried {expected}");
    }
    assert!(run.forbidden.iter().any(|secret| secret == "Pat Example"), "the vignettes' patient is Pat Example");
    assert!(run.forbidden.len() > 50, "only {} secrets collected", run.forbidden.len());
    let leaks: Vec<(&String, &String)> = run
        .forbidden
        .iter()
        .flat_map(|secret| {
            run.seen.iter().filter(move |text| text.contains(secret.as_str())).map(move |text| (secret, text))
        })
        .collect();
    assert!(leaks.is_empty(), "PHI in telemetry (secret, where): {leaks:#?}");
}

#[test]
fn spans_and_metrics_are_exported_over_otlp_with_their_names() {
    let run = run();
    for name in [
        "POST /cds-services/{id}",
        "invoke service",
        "assemble record",
        "fetch FHIR data",
        "evaluate rules",
        "build cards",
        "build order review cards",
        "store feedback",
    ] {
        assert!(run.span_names.iter().any(|n| n == name), "no {name} span in {:?}", run.span_names);
    }
    for name in [
        "popliteal.requests",
        "popliteal.request.duration",
        "popliteal.cards",
        "popliteal.feedback",
        "popliteal.fhir.fetch.duration",
        "popliteal.fhir.fetch.failures",
        "popliteal.audit.records",
    ] {
        assert!(run.metric_names.iter().any(|n| n == name), "no {name} metric in {:?}", run.metric_names);
    }
    // The same reached the OTLP receiver (protobuf: the names are there as UTF-8 strings).
    let received = run.received.lock().expect("lock");
    let contains = |path: &str, needle: &str| {
        received
            .otlp
            .iter()
            .filter(|(p, _)| p == path)
            .any(|(_, body)| body.windows(needle.len()).any(|window| window == needle.as_bytes()))
    };
    for name in ["evaluate rules", "fetch FHIR data", "POST /cds-services/{id}", "service.name", "popliteal"] {
        assert!(contains("/v1/traces", name), "{name} was not exported to /v1/traces");
    }
    for name in ["popliteal.requests", "popliteal.cards", "popliteal.fhir.fetch.duration", "deployment.environment"] {
        assert!(contains("/v1/metrics", name), "{name} was not exported to /v1/metrics");
    }
}

#[test]
fn an_incoming_traceparent_is_the_parent_and_goes_on_to_the_fhir_server() {
    let run = run();
    let fetches: Vec<&(String, String)> =
        run.traces.iter().filter(|(name, trace)| name == "fetch FHIR data" && trace == TRACE_ID).collect();
    assert!(fetches.len() >= 2, "the fetches of the traced call belong to the EHR's trace: {fetches:?}");
    let received = run.received.lock().expect("lock");
    let traced: Vec<&(String, Option<String>)> = received
        .fhir
        .iter()
        .filter(|(_, traceparent)| traceparent.as_deref().is_some_and(|t| t.contains(TRACE_ID)))
        .collect();
    assert_eq!(traced.len(), fetches.len(), "each FHIR request carries the trace: {:?}", received.fhir);
    for (_, traceparent) in traced {
        let traceparent = traceparent.as_deref().unwrap_or_default();
        assert!(traceparent.starts_with("00-") && !traceparent.contains("00f067aa0ba902b7"), "{traceparent}");
    }
}

#[test]
fn a_hook_service_id_or_header_a_client_made_up_reaches_no_log_line_or_span_but_invalid_does() {
    let run = run();
    let refused: Vec<&str> = run.log.lines().filter(|line| line.contains("/cds-services/invalid")).collect();
    assert!(!refused.is_empty(), "the refused calls are logged, their service id as invalid: {}", run.log);
    assert!(run.log.contains(r#""hook":"invalid""#), "the unknown hook is logged as invalid");
    let lines: Vec<&str> = run.log.lines().filter(|line| line.contains(SENTINEL)).collect();
    assert!(lines.is_empty(), "client text in the log: {lines:#?}");
    let fields: Vec<&String> = run.seen.iter().filter(|text| text.contains(SENTINEL)).collect();
    assert!(fields.is_empty(), "client text in spans, events or metrics: {fields:#?}");
}
