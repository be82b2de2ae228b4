//! The application: settings -> bound listener, shared state and routes.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::audit::{AuditWriter, Auditor};
use crate::auth::{AuthConfigError, Authenticator};
use crate::body::BodyLimits;
use crate::catalogue::{Catalogue, CatalogueError};
use crate::configuration::Settings;
use crate::connections::ConnectionLimiter;
use crate::cors::OriginPolicy;
use crate::error::ApiError;
use crate::evaluate::{EvaluationSettings, Knowledge, KnowledgeError};
use crate::fhir::budget::ByteBudget;
use crate::fhir::fetch::{FetchPolicy, FhirClient};
use crate::intake::IntakeApp;
use crate::limits::RateLimiter;
use crate::middleware::{errors_as_operation_outcomes, guard, request_metrics};
use crate::store::{Backend, Store, StoreError};
use crate::telemetry::{CdsRootSpan, Metrics};
use crate::{retention, routes};

/// Everything the handlers share, built once at start.
pub struct AppState {
    pub catalogue: Catalogue,
    pub knowledge: Knowledge,
    pub evaluation: EvaluationSettings,
    /// The Questionnaire, with its canonical URL set from the configuration.
    pub questionnaire: bytes::Bytes,
    /// How request bodies are read (size, deadlines, JSON nesting).
    pub body: BodyLimits,
    /// Request headers larger than this are refused with 431.
    pub max_header_bytes: usize,
    /// The EHRs' FHIR servers: the HTTP client (no redirects: the token stays at the origin),
    /// the fetch policy and the process's byte budget.
    pub fhir: FhirClient,
    /// Verifies EHR tokens; `None` when `auth.mode = "off"`.
    pub authenticator: Option<Authenticator>,
    pub rate_limiter: RateLimiter,
    /// Feedback and the audit trail.
    pub store: Store,
    /// Queues audit records without waiting.
    pub auditor: Auditor,
    /// Request, card, feedback and FHIR fetch metrics (no-ops unless OpenTelemetry export is on).
    pub metrics: Metrics,
    /// The browser origins allowed to call (CORS).
    pub origins: OriginPolicy,
    /// The SMART on FHIR intake app: its registered EHRs, scopes and page policy.
    pub intake: IntakeApp,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error(transparent)]
    Knowledge(#[from] KnowledgeError),
    #[error("the Questionnaire file is not valid: {0}")]
    Questionnaire(serde_json::Error),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
}

fn questionnaire(settings: &Settings) -> Result<bytes::Bytes, StartupError> {
    let mut value: serde_json::Value =
        serde_json::from_str(crate::fhir::intake::QUESTIONNAIRE_JSON).map_err(StartupError::Questionnaire)?;
    value["url"] = serde_json::Value::String(settings.questionnaire_canonical());
    serde_json::to_vec(&value).map(bytes::Bytes::from).map_err(StartupError::Questionnaire)
}

impl AppState {
    pub fn build(settings: &Settings, store: Store, auditor: Auditor) -> Result<AppState, StartupError> {
        let origins = OriginPolicy::from_settings(&settings.cors, &settings.server.public_url);
        let catalogue = Catalogue::embedded()?;
        Ok(AppState {
            intake: IntakeApp::from_settings(&settings.intake, &catalogue),
            catalogue,
            knowledge: Knowledge::load(settings.terminology.site_codes_file.as_deref())?,
            evaluation: EvaluationSettings::from_settings(settings),
            questionnaire: questionnaire(settings)?,
            body: BodyLimits {
                max_bytes: settings.server.max_body_bytes.get(),
                total: Duration::from_millis(settings.server.body_read_timeout_ms.get()),
                idle: Duration::from_millis(settings.server.body_idle_timeout_ms.get()),
                max_json_depth: settings.limits.max_json_depth.get(),
            },
            max_header_bytes: settings.server.max_header_bytes.get(),
            fhir: FhirClient::new(FetchPolicy::from_settings(&settings.fhir, settings.environment))
                .map_err(|e| StartupError::HttpClient(e.to_string()))?,
            // Replicas on one PostgreSQL database refuse each other's replayed tokens; SQLite is
            // one process, and its cache is enough.
            authenticator: Authenticator::from_settings(settings)?.map(|authenticator| match store.backend() {
                Backend::Postgres => authenticator.with_shared_replays(store.clone()),
                Backend::Sqlite => authenticator,
            }),
            rate_limiter: RateLimiter::new(settings.limits.requests_per_second, settings.limits.burst),
            store,
            auditor,
            metrics: Metrics::default(),
            origins,
        })
    }
}

/// Raises the process's open-file limit to its hard limit, so that the connection cap per
/// address, not the descriptor limit, is what a flood of connections meets first. Returns the
/// limit in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

pub struct Application {
    port: u16,
    server: Server,
    store: Store,
    auditor: Auditor,
    audit_writer: AuditWriter,
    retention: JoinHandle<()>,
    fetch_budget: std::sync::Arc<ByteBudget>,
}

/// How long a stopping server waits for queued audit records and open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a stopping server lets requests in flight finish (a body's read deadline is 10 s by
/// default); then the audit spool and the pool get `SHUTDOWN_GRACE` each. Kubernetes'
/// `terminationGracePeriodSeconds` (30) covers the preStop sleep (5) and all three.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);

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
        let (auditor, audit_writer) = Auditor::start(store.clone(), &settings.audit)?;
        let state = web::Data::new(AppState::build(settings, store.clone(), auditor.clone())?);
        let fetch_budget = std::sync::Arc::clone(&state.fhir.budget);
        let origins = state.origins.clone();
        let starting = store.clone();
        tokio::spawn(async move {
            // Creates the SQLite file and the schema now rather than at the first write.
            if let Err(error) = starting.migrate().await {
                tracing::warn!(error.detail = %error, "the database is not ready at start; feedback answers 503 until it is");
            }
        });
        let retention = retention::spawn(store.clone(), &settings.audit);
        let connections = ConnectionLimiter::new(settings.server.max_connections_per_address);
        let server = HttpServer::new(move || {
            // Outermost last: tracing, metrics, then OperationOutcomes for every error, CORS, the
            // guard.
            App::new()
                .wrap(from_fn(guard))
                .wrap(origins.middleware())
                .wrap(from_fn(errors_as_operation_outcomes))
                .wrap(from_fn(request_metrics))
                .wrap(TracingLogger::<CdsRootSpan>::new())
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(not_found))
        })
        .on_connect(move |connection, extensions| connections.on_connect(connection, extensions))
        .shutdown_timeout(IN_FLIGHT_GRACE.as_secs())
        .listen(listener)?
        .run();
        Ok(Application { port, server, store, auditor, audit_writer, retention, fetch_budget })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store the application writes to.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The process's budget of bytes read from FHIR servers (its peak tells the most held at once).
    pub fn fetch_budget(&self) -> std::sync::Arc<ByteBudget> {
        std::sync::Arc::clone(&self.fetch_budget)
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
