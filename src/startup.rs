//! The application: settings -> bound listener, shared state and routes.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::audit::{AuditWriter, Auditor};
use crate::cards::wording::{Wording, WordingError};
use crate::catalogue::{Catalogue, CatalogueError};
use crate::configuration::Settings;
use crate::error::ApiError;
use crate::evaluate::{EvaluationSettings, Knowledge};
use crate::store::{Store, StoreError};
use crate::telemetry::CdsRootSpan;
use crate::terminology::{Terminology, TerminologyError};
use crate::{retention, routes};

/// Everything the handlers share, built once at start.
pub struct AppState {
    pub catalogue: Catalogue,
    pub knowledge: Knowledge,
    pub evaluation: EvaluationSettings,
    /// The Questionnaire, with its canonical URL set from the configuration.
    pub questionnaire: bytes::Bytes,
    pub max_body_bytes: usize,
    /// Feedback and the audit trail.
    pub store: Store,
    /// Queues audit records without waiting.
    pub auditor: Auditor,
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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

const QUESTIONNAIRE_FILE: &str = include_str!("../cds-hooks/questionnaire/posterior-knee-pain.json");

fn questionnaire(settings: &Settings) -> Result<bytes::Bytes, StartupError> {
    let mut value: serde_json::Value = serde_json::from_str(QUESTIONNAIRE_FILE).map_err(StartupError::Questionnaire)?;
    value["url"] = serde_json::Value::String(settings.questionnaire_canonical());
    serde_json::to_vec(&value).map(bytes::Bytes::from).map_err(StartupError::Questionnaire)
}

impl AppState {
    pub fn build(settings: &Settings, store: Store, auditor: Auditor) -> Result<AppState, StartupError> {
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
            store,
            auditor,
        })
    }
}

pub struct Application {
    port: u16,
    server: Server,
    store: Store,
    auditor: Auditor,
    audit_writer: AuditWriter,
    retention: JoinHandle<()>,
}

/// How long a stopping server waits for queued audit records and open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Unknown paths get a FHIR OperationOutcome too.
async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".into()))
}

impl Application {
    /// Binds the listener and starts the background tasks (audit writer, migrations, retention
    /// purge). Must be called inside a tokio runtime. The database may be down: the service starts
    /// anyway, answers hook calls, and answers feedback with 503 until the database is back.
    pub fn build(settings: &Settings) -> Result<Application, StartupError> {
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind { address, source })?;
        let port = listener.local_addr()?.port();
        let store = Store::connect(&settings.database)?;
        let (auditor, audit_writer) = Auditor::start(store.clone(), &settings.audit);
        let state = web::Data::new(AppState::build(settings, store.clone(), auditor.clone())?);
        let starting = store.clone();
        tokio::spawn(async move {
            // Creates the SQLite file and the schema now rather than at the first write.
            if let Err(error) = starting.migrate().await {
                tracing::warn!(error.detail = %error, "the database is not ready at start; feedback answers 503 until it is");
            }
        });
        let retention = retention::spawn(store.clone(), &settings.audit);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::<CdsRootSpan>::new())
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        .run();
        Ok(Application { port, server, store, auditor, audit_writer, retention })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store the application writes to.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The audit queue (its counts tell what was written, failed or dropped).
    pub fn auditor(&self) -> Auditor {
        self.auditor.clone()
    }

    /// Serves until the server stops (SIGINT, SIGTERM), then writes the queued audit records and
    /// closes the pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.retention.abort();
        self.audit_writer.finish(SHUTDOWN_GRACE).await;
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.store.close()).await;
        result
    }
}
