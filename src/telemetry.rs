//! Logging. JSON lines by default. Spans carry ids (hookInstance, service id), never content:
//! no patient data, answers, tokens or resource bodies are recorded anywhere.

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::configuration::{LogFormat, LogSettings};

/// Installs the global subscriber once (later calls are ignored, which suits tests).
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::CLOSE);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// The root span of every request: the default fields (method, route, status, latency) plus the
/// CDS Hooks ids the handlers record and the authenticated EHR's `iss`.
pub struct CdsRootSpan;

impl RootSpanBuilder for CdsRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        tracing_actix_web::root_span!(
            request,
            service_id = tracing::field::Empty,
            hook = tracing::field::Empty,
            hook_instance = tracing::field::Empty,
            client_iss = tracing::field::Empty,
            cards = tracing::field::Empty
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
