//! Settings: `config/default.toml`, then `config/{APP_ENVIRONMENT}.toml`, then environment
//! variables `POPLITEAL__SECTION__KEY` (e.g. `POPLITEAL__SERVER__PORT=9000`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub environment: Environment,
    pub server: ServerSettings,
    pub questionnaire: QuestionnaireSettings,
    pub log: LogSettings,
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    #[error("APP_ENVIRONMENT must be one of local, test, production (got {0:?})")]
    UnknownEnvironment(String),
    #[error("configuration is invalid: {0}")]
    Invalid(#[from] config::ConfigError),
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
        Ok(settings.try_deserialize()?)
    }

    pub fn questionnaire_canonical(&self) -> String {
        format!("{}/fhir/Questionnaire/posterior-knee-pain", self.questionnaire.canonical_base.trim_end_matches('/'))
    }

    pub fn questionnaire_public_url(&self) -> String {
        format!("{}/fhir/Questionnaire/posterior-knee-pain", self.server.public_url.trim_end_matches('/'))
    }
}
