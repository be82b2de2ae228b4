//! Logs, traces and metrics. JSON log lines by default; with `telemetry.otlp_endpoint` set, spans
//! and metrics also go to an OpenTelemetry collector over OTLP/HTTP (protobuf), with the
//! `service.name`, `service.version` and `deployment.environment` resource attributes.
//!
//! **No PHI leaves the process through telemetry.** Spans and events carry ids (hookInstance,
//! service id, card topics, prefetch keys), counts, statuses and durations, never content: no
//! patient name, birth date, answers, tokens or resource bodies. Child spans are declared with
//! `skip_all` so no argument is recorded by accident; metric attributes come from closed sets
//! (service ids from the catalogue, topics, indicators, outcomes, prefetch keys, statuses). A
//! test (`tests/telemetry.rs`) captures every span, event and metric attribute over all the
//! vignettes and checks it.
//!
//! W3C trace context: an incoming `traceparent` becomes the parent of the request's span
//! (tracing-actix-web), and the FHIR server requests carry the current span's `traceparent`.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{Error, HttpMessage};
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{MeterProviderBuilder, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, TracerProviderBuilder};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::catalogue::ServiceKind;
use crate::configuration::{LogFormat, LogSettings, Settings};
use crate::protocol::card::Card;
use crate::protocol::feedback::FeedbackItem;
use crate::protocol::request::is_safe_token;

/// The instrumentation scope of our spans and metrics.
pub const SCOPE: &str = "popliteal";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot start the OTLP export thread: {0}")]
    Runtime(#[from] std::io::Error),
}

/// The OpenTelemetry providers, when export is on. Shut down once the server has stopped.
#[derive(Default)]
pub struct Telemetry {
    providers: Option<(SdkTracerProvider, SdkMeterProvider)>,
}

/// The tracer and meter provider builders, for a caller that adds its own exporters (tests add
/// in-memory ones).
pub type Builders = (TracerProviderBuilder, MeterProviderBuilder);

impl Telemetry {
    /// OTLP export when `telemetry.otlp_endpoint` is set; nothing otherwise.
    pub fn start(settings: &Settings) -> Result<Telemetry, TelemetryError> {
        global::set_text_map_propagator(TraceContextPropagator::new());
        if settings.telemetry.endpoint().is_none() {
            return Ok(Telemetry::default());
        }
        Telemetry::start_with(settings, |builders| builders)
    }

    /// The providers with OTLP export when an endpoint is set, and whatever `adjust` adds. Sets
    /// the global propagator (W3C trace context) and meter provider.
    pub fn start_with(
        settings: &Settings,
        adjust: impl FnOnce(Builders) -> Builders,
    ) -> Result<Telemetry, TelemetryError> {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let resource = resource(settings);
        let mut traces = SdkTracerProvider::builder().with_resource(resource.clone());
        let mut metrics = SdkMeterProvider::builder().with_resource(resource);
        if let Some(endpoint) = settings.telemetry.endpoint() {
            let client = ExportClient::start()?;
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client.clone())
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(signal_url(endpoint, "traces"))
                .build()?;
            traces = traces.with_batch_exporter(spans);
            let exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(signal_url(endpoint, "metrics"))
                .build()?;
            let interval = Duration::from_millis(settings.telemetry.metrics_interval_ms.get());
            metrics = metrics.with_reader(PeriodicReader::builder(exporter).with_interval(interval).build());
        }
        let (traces, metrics) = adjust((traces, metrics));
        let tracer_provider = traces.build();
        let meter_provider = metrics.build();
        global::set_meter_provider(meter_provider.clone());
        Ok(Telemetry { providers: Some((tracer_provider, meter_provider)) })
    }

    pub fn is_exporting(&self) -> bool {
        self.providers.is_some()
    }

    /// The layer that turns tracing spans into OpenTelemetry spans (none when export is off).
    pub fn layer<S>(&self) -> Option<impl Layer<S> + use<S>>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let (tracer_provider, _) = self.providers.as_ref()?;
        Some(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer(SCOPE)))
    }

    /// Installs the global subscriber once (later calls are ignored, which suits tests): log
    /// lines on stdout, and the OpenTelemetry layer when exporting.
    pub fn install_subscriber(&self, settings: &LogSettings) {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
        let logs = log_layer(settings, std::io::stdout);
        let _ = tracing_subscriber::registry().with(logs).with(self.layer()).with(filter).try_init();
    }

    /// Exports what is buffered now (tests).
    pub fn flush(&self) {
        if let Some((tracer_provider, meter_provider)) = &self.providers {
            let _ = tracer_provider.force_flush();
            let _ = meter_provider.force_flush();
        }
    }

    /// Exports what is buffered and stops the providers: call once the server has stopped.
    pub fn shutdown(self) {
        if let Some((tracer_provider, meter_provider)) = self.providers {
            if let Err(error) = tracer_provider.shutdown() {
                tracing::warn!(error.detail = %error, "the tracer provider did not shut down cleanly");
            }
            if let Err(error) = meter_provider.shutdown() {
                tracing::warn!(error.detail = %error, "the meter provider did not shut down cleanly");
            }
        }
    }
}

/// The log lines, written to `writer` (stdout in the service; tests capture them): JSON or
/// pretty, each event with the fields of the request's root span.
pub fn log_layer<S, W>(settings: &LogSettings, writer: W) -> impl Layer<S> + use<S, W>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    // The log sees the request's root span only (its fields are on every line): the child
    // spans go to OpenTelemetry. Formatting each child span's fields for a log that never
    // prints them was a fifth of a hook call's time.
    let root_span_only = filter_fn(|metadata| !metadata.is_span() || metadata.name() == ROOT_SPAN_NAME);
    match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_span_events(FmtSpan::NONE)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => {
            tracing_subscriber::fmt::layer().with_span_events(FmtSpan::NONE).with_writer(writer).boxed()
        }
    }
    .with_filter(root_span_only)
}

/// Installs the global subscriber without OpenTelemetry export (logs only).
pub fn init(settings: &LogSettings) {
    Telemetry::default().install_subscriber(settings);
}

fn resource(settings: &Settings) -> Resource {
    Resource::builder()
        .with_service_name(settings.telemetry.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment", settings.environment.as_str()),
        ])
        .build()
}

/// `{endpoint}/v1/{signal}`: the OTLP/HTTP paths under a collector's base URL.
pub fn signal_url(endpoint: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", endpoint.trim_end_matches('/'))
}

/// The OTLP exporters' HTTP client: our reqwest, on a tokio runtime of its own (one thread). The
/// SDK exports from its own threads with a plain `block_on`, where reqwest finds no runtime; and a
/// runtime of our own keeps exporting while the server's runtime is busy shutting down.
#[derive(Debug, Clone)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    fn start() -> Result<ExportClient, TelemetryError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        Ok(ExportClient { client, runtime: handle })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<bytes::Bytes>,
    ) -> Result<opentelemetry_http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?.error_for_status()?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let mut answer = opentelemetry_http::Response::builder().status(status).body(body)?;
            *answer.headers_mut() = headers;
            Ok::<_, opentelemetry_http::HttpError>(answer)
        });
        task.await?
    }
}

/// The service's metrics. Instruments come from the global meter provider: no-ops while export is
/// off. Attributes are ids and codes from closed sets, never content.
#[derive(Clone)]
pub struct Metrics {
    requests: Counter<u64>,
    request_duration: Histogram<f64>,
    cards: Counter<u64>,
    feedback: Counter<u64>,
    fhir_fetch_duration: Histogram<f64>,
    fhir_fetch_failures: Counter<u64>,
    audit_records: Counter<u64>,
}

/// Seconds: from 5 ms to 10 s.
const DURATION_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0];

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new(&global::meter(SCOPE))
    }
}

impl Metrics {
    pub fn new(meter: &Meter) -> Metrics {
        Metrics {
            requests: meter
                .u64_counter("popliteal.requests")
                .with_description("HTTP requests answered, by service, route and status")
                .with_unit("{request}")
                .build(),
            request_duration: meter
                .f64_histogram("popliteal.request.duration")
                .with_description("Time to answer an HTTP request, by service, route and status")
                .with_unit("s")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            cards: meter
                .u64_counter("popliteal.cards")
                .with_description("Cards returned, by service, topic and indicator")
                .with_unit("{card}")
                .build(),
            feedback: meter
                .u64_counter("popliteal.feedback")
                .with_description("Feedback items received, by service and outcome")
                .with_unit("{item}")
                .build(),
            fhir_fetch_duration: meter
                .f64_histogram("popliteal.fhir.fetch.duration")
                .with_description("Time to read one prefetch key from the FHIR server, by key and result")
                .with_unit("s")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            fhir_fetch_failures: meter
                .u64_counter("popliteal.fhir.fetch.failures")
                .with_description("Prefetch keys that could not be read from the FHIR server, by key and reason")
                .with_unit("{key}")
                .build(),
            audit_records: meter
                .u64_counter("popliteal.audit.records")
                .with_description(
                    "Audit records of hook calls, by result: written (to the database), lost (the spool could not \
                     be written: a full or failing disk) or rejected (refused by the database, set aside)",
                )
                .with_unit("{record}")
                .build(),
        }
    }

    /// One answered request. `service` is a catalogue id or `none`; `route` the matched pattern.
    pub fn request(&self, service: &'static str, route: String, status: StatusCode, elapsed: Duration) {
        let attributes = [
            KeyValue::new("cds.service", service),
            KeyValue::new("http.route", route),
            KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
        ];
        self.requests.add(1, &attributes);
        self.request_duration.record(elapsed.as_secs_f64(), &attributes);
    }

    pub fn cards(&self, service: &'static str, cards: &[Card]) {
        for card in cards {
            self.cards.add(
                1,
                &[
                    KeyValue::new("cds.service", service),
                    KeyValue::new("card.topic", card.source.topic.code.clone()),
                    KeyValue::new("card.indicator", card.indicator.as_str()),
                ],
            );
        }
    }

    pub fn feedback(&self, service: &'static str, items: &[FeedbackItem]) {
        for item in items {
            self.feedback.add(
                1,
                &[KeyValue::new("cds.service", service), KeyValue::new("feedback.outcome", item.outcome.as_str())],
            );
        }
    }

    /// One key read from the FHIR server (`result`: `ok` or the failure), with its duration.
    pub fn fhir_fetch(&self, key: &'static str, result: &'static str, elapsed: Duration) {
        self.fhir_fetch_duration
            .record(elapsed.as_secs_f64(), &[KeyValue::new("fhir.key", key), KeyValue::new("fhir.result", result)]);
    }

    /// The audit spool's backlog, observed at each export: `popliteal.audit.backlog` (records)
    /// and `popliteal.audit.backlog.bytes`.
    pub fn audit_backlog(&self, counts: std::sync::Arc<crate::audit::spool::SpoolCounts>) {
        let meter = global::meter(SCOPE);
        let records = std::sync::Arc::clone(&counts);
        let _ = meter
            .u64_observable_gauge("popliteal.audit.backlog")
            .with_description("Audit records in the spool, not yet in the database")
            .with_unit("{record}")
            .with_callback(move |observer| {
                observer.observe(records.backlog_records.load(std::sync::atomic::Ordering::Relaxed), &[]);
            })
            .build();
        let _ = meter
            .u64_observable_gauge("popliteal.audit.backlog.bytes")
            .with_description("Bytes of the audit spool not yet in the database")
            .with_unit("By")
            .with_callback(move |observer| {
                observer.observe(counts.backlog_bytes.load(std::sync::atomic::Ordering::Relaxed), &[]);
            })
            .build();
    }

    /// Audit records that reached `result`: `written`, `lost` or `rejected`.
    pub fn audit_records(&self, result: &'static str, count: u64) {
        self.audit_records.add(count, &[KeyValue::new("audit.result", result)]);
    }

    /// A key that could not be read from the FHIR server, and why (`status-404`, `timeout`, ...).
    pub fn fhir_fetch_failure(&self, key: &'static str, reason: &'static str) {
        self.fhir_fetch_failures.add(1, &[KeyValue::new("fhir.key", key), KeyValue::new("fhir.failure", reason)]);
    }
}

/// The root span of every request: the default fields (method, route, status, latency, trace id;
/// the parent from an incoming `traceparent`) plus the CDS Hooks ids the handlers record and the
/// authenticated EHR's `iss`. No field holds text as the client wrote it (see [`INVALID`]).
pub struct CdsRootSpan;

/// What a log line or span shows instead of a value a client sent that is not a known name (a
/// hook or service id of the catalogue, a standard HTTP method) nor an id that passes the
/// request sanitiser (`protocol::request::is_safe_token`): a client cannot write into the log.
pub const INVALID: &str = "invalid";

/// A service id of the catalogue, else [`INVALID`].
pub fn loggable_service_id(id: &str) -> &'static str {
    ServiceKind::ALL.iter().find(|service| service.id() == id).map_or(INVALID, |service| service.id())
}

/// A hook one of the catalogue's services answers, else [`INVALID`].
pub fn loggable_hook(hook: &str) -> &'static str {
    ServiceKind::ALL.iter().find(|service| service.hook() == hook).map_or(INVALID, |service| service.hook())
}

/// An id (`hookInstance`, `jti`, `kid`, a path parameter) that passes the request sanitiser: at
/// most 128 characters of `A-Z a-z 0-9 - _ . :`. Else [`INVALID`].
pub fn loggable_id(id: &str) -> &str {
    if is_safe_token(id) { id } else { INVALID }
}

fn loggable_method(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ]
    .into_iter()
    .find(|known| known == method)
    .map_or(INVALID, |known| match known {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        _ => "CONNECT",
    })
}

/// The path of a matched route, rebuilt from its pattern: `{id}` under `/cds-services` is a
/// catalogue service id or `invalid`, a file of the intake app one it serves or `invalid`,
/// another parameter an id that passes the sanitiser or `invalid`.
fn loggable_target(pattern: &str, path: &str) -> String {
    if pattern.starts_with("/intake/{") {
        let sent = path.strip_prefix("/intake/").unwrap_or_default();
        let known = crate::intake::assets::find(sent).map_or(INVALID, |asset| asset.path);
        return format!("/intake/{known}");
    }
    let services = pattern.starts_with("/cds-services/");
    pattern
        .split('/')
        .zip(path.split('/').chain(std::iter::repeat("")))
        .map(|(part, sent)| match part {
            "{id}" if services => loggable_service_id(sent),
            _ if part.starts_with('{') => loggable_id(sent),
            _ => part,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The name `tracing_actix_web::root_span!` gives the request's root span.
const ROOT_SPAN_NAME: &str = "HTTP request";

/// When the request arrived (kept in the request's extensions for the completion line).
#[derive(Clone, Copy)]
struct Arrived(std::time::Instant);

impl RootSpanBuilder for CdsRootSpan {
    /// The fields of tracing-actix-web's `root_span!`, each from what the service knows rather
    /// than what the client wrote: the method if it is a standard one, the route pattern, the
    /// target rebuilt from the pattern (a service id from the catalogue, another id if it passes
    /// the sanitiser, else `invalid`; no query string), the connection's peer address (not a
    /// `Forwarded` header). The `Host` and `User-Agent` headers are not recorded.
    fn on_request_start(request: &ServiceRequest) -> Span {
        use tracing_actix_web::root_span_macro::private;
        request.extensions_mut().insert(Arrived(std::time::Instant::now()));
        let method = loggable_method(request.method());
        let pattern = request.match_pattern();
        let route = pattern.clone().unwrap_or_else(|| "default".to_owned());
        let target = pattern.as_deref().map_or(INVALID.to_owned(), |pattern| loggable_target(pattern, request.path()));
        let client_ip = request.peer_addr().map(|peer| peer.ip().to_string()).unwrap_or_default();
        let scheme = if request.app_config().secure() { "https" } else { "http" };
        // As `root_span!` does: the trace id of an incoming `traceparent`, else filled in below.
        let remote_trace_id = private::extract_otel_trace_id(request);
        let span = tracing::info_span!(
            "HTTP request",
            http.method = method,
            http.route = %route,
            http.flavor = %private::http_flavor(request.version()),
            http.scheme = scheme,
            http.client_ip = %client_ip,
            http.target = %target,
            http.status_code = tracing::field::Empty,
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            request_id = %private::get_request_id(request),
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
            service_id = tracing::field::Empty,
            hook = tracing::field::Empty,
            hook_instance = tracing::field::Empty,
            client_iss = tracing::field::Empty,
            cards = tracing::field::Empty
        );
        if let Some(trace_id) = remote_trace_id {
            span.record("trace_id", trace_id);
        }
        private::set_otel_parent(request, &span);
        span
    }

    /// One log line per request, in its span (status, route, ids), with the latency. Child spans
    /// go to OpenTelemetry, not to the log: a line per span would cost more than the evaluation.
    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let latency_us = outcome.as_ref().ok().and_then(|response| {
            response.request().extensions().get::<Arrived>().map(|arrived| arrived.0.elapsed().as_micros() as u64)
        });
        DefaultRootSpanBuilder::on_request_end(span.clone(), outcome);
        span.in_scope(|| tracing::info!(latency_us, "request completed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_logged_as_its_route_with_known_service_ids_and_safe_ids_only() {
        let target = |pattern, path| loggable_target(pattern, path);
        assert_eq!(
            target("/cds-services/{id}", "/cds-services/posterior-knee-pain"),
            "/cds-services/posterior-knee-pain"
        );
        assert_eq!(
            target("/cds-services/{id}/feedback", "/cds-services/order-Sentinel/feedback"),
            "/cds-services/invalid/feedback"
        );
        assert_eq!(
            target("/fhir/Questionnaire/{id}", "/fhir/Questionnaire/posterior-knee-pain"),
            "/fhir/Questionnaire/posterior-knee-pain"
        );
        assert_eq!(target("/fhir/Questionnaire/{id}", "/fhir/Questionnaire/a%22b"), "/fhir/Questionnaire/invalid");
        assert_eq!(target("/health", "/health"), "/health");
        assert_eq!(
            target("/intake/{path:.*}", "/intake/vendor/lforms/lhc-forms.js"),
            "/intake/vendor/lforms/lhc-forms.js"
        );
        assert_eq!(target("/intake/{path:.*}", "/intake/Sentinel.js"), "/intake/invalid");
    }

    #[test]
    fn only_catalogue_hooks_standard_methods_and_sanitised_ids_are_logged_as_sent() {
        assert_eq!(loggable_hook("order-sign"), "order-sign");
        assert_eq!(loggable_hook("order-MalformedSentinel-XYZ"), INVALID);
        assert_eq!(loggable_service_id("posterior-knee-pain-order-select"), "posterior-knee-pain-order-select");
        assert_eq!(loggable_service_id("posterior-knee-pain "), INVALID);
        assert_eq!(loggable_id("ehr-key-1"), "ehr-key-1");
        assert_eq!(loggable_id("a\"}{\"forged\":\"line"), INVALID);
        assert_eq!(loggable_id(&"x".repeat(129)), INVALID);
        let custom = actix_web::http::Method::from_bytes(b"SENTINEL").expect("an extension method");
        assert_eq!(loggable_method(&custom), INVALID);
        assert_eq!(loggable_method(&actix_web::http::Method::POST), "POST");
    }
}
