//! The application: settings -> bound listener, shared state and routes.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::cards::wording::{Wording, WordingError};
use crate::catalogue::{Catalogue, CatalogueError};
use crate::configuration::Settings;
use crate::error::ApiError;
use crate::evaluate::{EvaluationSettings, Knowledge};
use crate::fhir::fetch::FetchPolicy;
use crate::routes;
use crate::telemetry::CdsRootSpan;
use crate::terminology::{Terminology, TerminologyError};

/// Everything the handlers share, built once at start.
pub struct AppState {
    pub catalogue: Catalogue,
    pub knowledge: Knowledge,
    pub evaluation: EvaluationSettings,
    /// The Questionnaire, with its canonical URL set from the configuration.
    pub questionnaire: bytes::Bytes,
    pub max_body_bytes: usize,
    /// The HTTP client for the EHRs' FHIR servers (no redirects: the token stays at the origin).
    pub http: reqwest::Client,
    pub fetch: FetchPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Terminology(#[from] TerminologyError),
    #[error(transparent)]
    Wording(#[from] WordingError),
    #[error("the Questionnaire file is not valid: {0}")]
    Questionnaire(serde_json::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
}

const QUESTIONNAIRE_FILE: &str = include_str!("../cds-hooks/questionnaire/posterior-knee-pain.json");

fn questionnaire(settings: &Settings) -> Result<bytes::Bytes, StartupError> {
    let mut value: serde_json::Value = serde_json::from_str(QUESTIONNAIRE_FILE).map_err(StartupError::Questionnaire)?;
    value["url"] = serde_json::Value::String(settings.questionnaire_canonical());
    serde_json::to_vec(&value).map(bytes::Bytes::from).map_err(StartupError::Questionnaire)
}

impl AppState {
    pub fn build(settings: &Settings) -> Result<AppState, StartupError> {
        Ok(AppState {
            catalogue: Catalogue::embedded()?,
            knowledge: Knowledge { terminology: Terminology::embedded()?, wording: Wording::embedded()? },
            evaluation: EvaluationSettings {
                questionnaire_canonical: settings.questionnaire_canonical(),
                questionnaire_url: settings.questionnaire_public_url(),
                stale_after_days: settings.questionnaire.stale_after_days,
            },
            questionnaire: questionnaire(settings)?,
            max_body_bytes: settings.server.max_body_bytes,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(std::time::Duration::from_millis(settings.fhir.fetch_budget_ms))
                .user_agent(concat!("popliteal/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| StartupError::HttpClient(e.to_string()))?,
            fetch: settings.fetch_policy(),
        })
    }
}

pub struct Application {
    port: u16,
    server: Server,
}

/// Unknown paths get a FHIR OperationOutcome too.
async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".into()))
}

impl Application {
    pub fn build(settings: &Settings) -> Result<Application, StartupError> {
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind { address, source })?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState::build(settings)?);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::<CdsRootSpan>::new())
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
