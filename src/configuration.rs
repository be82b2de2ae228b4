//! Settings: `config/default.toml`, then `config/{APP_ENVIRONMENT}.toml`, then environment
//! variables `POPLITEAL__SECTION__KEY` (e.g. `POPLITEAL__SERVER__PORT=9000`).

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub environment: Environment,
    pub server: ServerSettings,
    pub questionnaire: QuestionnaireSettings,
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub audit: AuditSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Local,
    Test,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Local => "local",
            Environment::Test => "test",
            Environment::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// The URL clients reach this service at (links to the Questionnaire are built from it).
    pub public_url: String,
    /// Request bodies above this size are refused with 413.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QuestionnaireSettings {
    /// The base of the Questionnaire's canonical URL (`{base}/fhir/Questionnaire/posterior-knee-pain`).
    pub canonical_base: String,
    /// QuestionnaireResponses older than this many days are stale.
    pub stale_after_days: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// A tracing filter (`info`, `popliteal=debug,actix_web=info`); `RUST_LOG` wins when set.
    pub level: String,
    /// `json` (default) or `pretty`.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Where feedback and the audit trail are stored (see `store`).
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db?mode=rwc` (created on start), `sqlite::memory:` (one private
    /// in-memory database per process: tests), or `postgres://user:password@host:port/database`.
    /// A secret (it may carry a password): never logged.
    pub url: SecretString,
    /// The most connections the pool opens (an in-memory SQLite database always uses one).
    pub max_connections: u32,
    /// How long a request waits for a connection or a lock before the answer is 503.
    pub timeout_ms: u64,
}

/// The audit trail of hook calls, and how long it and the feedback are kept.
#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    /// The HMAC-SHA256 key the patient id is hashed with before it is stored: a secret, at least
    /// 32 characters. Production takes it from `POPLITEAL__AUDIT__PATIENT_HASH_KEY`.
    pub patient_hash_key: SecretString,
    /// Audit records and feedback older than this many days are purged.
    pub retention_days: u32,
    /// How often the purge runs.
    pub purge_interval_seconds: u64,
    /// Audit records waiting to be written; when the queue is full a record is dropped (and
    /// counted), never the hook call.
    pub queue_capacity: usize,
    /// How long one audit write may take before it counts as failed.
    pub write_timeout_ms: u64,
}

/// The shortest patient hash key accepted.
pub const MIN_PATIENT_HASH_KEY_CHARS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    #[error("APP_ENVIRONMENT must be one of local, test, production (got {0:?})")]
    UnknownEnvironment(String),
    #[error("configuration is invalid: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("configuration is invalid: {0}")]
    Rule(String),
}

/// The folder with the configuration files: `./config` when it exists (the service is run from
/// its repository), else the one next to the crate's sources.
pub fn configuration_directory() -> PathBuf {
    let local = Path::new("config");
    if local.join("default.toml").exists() {
        local.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
    }
}

impl Settings {
    /// Loads the settings for the environment named by `APP_ENVIRONMENT` (default `local`).
    pub fn load() -> Result<Settings, ConfigurationError> {
        let environment = std::env::var("APP_ENVIRONMENT").unwrap_or_else(|_| "local".to_owned());
        Settings::load_for(&environment, &configuration_directory())
    }

    pub fn load_for(environment: &str, directory: &Path) -> Result<Settings, ConfigurationError> {
        if !["local", "test", "production"].contains(&environment) {
            return Err(ConfigurationError::UnknownEnvironment(environment.to_owned()));
        }
        let settings = config::Config::builder()
            .add_source(config::File::from(directory.join("default.toml")))
            .add_source(config::File::from(directory.join(format!("{environment}.toml"))).required(false))
            .set_override("environment", environment)?
            .add_source(config::Environment::with_prefix("POPLITEAL").prefix_separator("__").separator("__"))
            .build()?;
        let settings: Settings = settings.try_deserialize()?;
        settings.check()?;
        Ok(settings)
    }

    /// The rules a type cannot say.
    fn check(&self) -> Result<(), ConfigurationError> {
        if self.audit.patient_hash_key.expose_secret().chars().count() < MIN_PATIENT_HASH_KEY_CHARS {
            return Err(ConfigurationError::Rule(format!(
                "audit.patient_hash_key must be at least {MIN_PATIENT_HASH_KEY_CHARS} characters"
            )));
        }
        if self.audit.retention_days == 0 || self.audit.purge_interval_seconds == 0 || self.audit.queue_capacity == 0 {
            return Err(ConfigurationError::Rule(
                "audit.retention_days, audit.purge_interval_seconds and audit.queue_capacity must be positive".into(),
            ));
        }
        if self.database.max_connections == 0 || self.database.timeout_ms == 0 {
            return Err(ConfigurationError::Rule(
                "database.max_connections and database.timeout_ms must be positive".into(),
            ));
        }
        Ok(())
    }

    pub fn questionnaire_canonical(&self) -> String {
        format!("{}/fhir/Questionnaire/posterior-knee-pain", self.questionnaire.canonical_base.trim_end_matches('/'))
    }

    pub fn questionnaire_public_url(&self) -> String {
        format!("{}/fhir/Questionnaire/posterior-knee-pain", self.server.public_url.trim_end_matches('/'))
    }
}
