//! Settings: `config/default.toml`, then `config/{APP_ENVIRONMENT}.toml`, then environment
//! variables `POPLITEAL__SECTION__KEY` (e.g. `POPLITEAL__SERVER__PORT=9000`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub environment: Environment,
    pub server: ServerSettings,
    pub questionnaire: QuestionnaireSettings,
    pub fhir: FhirSettings,
    pub log: LogSettings,
}

/// Reading what the prefetch lacks from the EHR's FHIR server (`fhirServer`).
#[derive(Debug, Clone, Deserialize)]
pub struct FhirSettings {
    /// The time budget of the whole fetch phase of one request, in milliseconds.
    pub fetch_budget_ms: u64,
    /// Pages read per prefetch key, following Bundle `next` links.
    pub page_cap: usize,
    /// A FHIR server response larger than this is not read.
    pub max_response_bytes: usize,
    /// Origins `fhirServer` must match (`https://ehr.example.org`); empty: any https origin.
    pub allowed_origins: Vec<String>,
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
            .add_source(
                config::Environment::with_prefix("POPLITEAL")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("fhir.allowed_origins"),
            )
            .build()?;
        Ok(settings.try_deserialize()?)
    }

    pub fn questionnaire_canonical(&self) -> String {
        format!("{}/fhir/Questionnaire/posterior-knee-pain", self.questionnaire.canonical_base.trim_end_matches('/'))
    }

    /// How fetching from `fhirServer` may happen: plain http to loopback only in local and test.
    pub fn fetch_policy(&self) -> crate::fhir::fetch::FetchPolicy {
        crate::fhir::fetch::FetchPolicy {
            budget: std::time::Duration::from_millis(self.fhir.fetch_budget_ms),
            page_cap: self.fhir.page_cap.max(1),
            max_response_bytes: self.fhir.max_response_bytes,
            allowed_origins: self.fhir.allowed_origins.clone(),
            allow_loopback_http: matches!(self.environment, Environment::Local | Environment::Test),
        }
    }

    pub fn questionnaire_public_url(&self) -> String {
        format!("{}/fhir/Questionnaire/posterior-knee-pain", self.server.public_url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configuration_loads_for_every_environment() {
        for environment in ["local", "test", "production"] {
            let settings = Settings::load_for(environment, &configuration_directory()).expect("loads");
            assert_eq!(settings.environment.as_str(), environment);
        }
        assert!(Settings::load_for("staging", &configuration_directory()).is_err());
    }

    #[test]
    fn production_never_allows_plain_http_to_loopback() {
        let settings = Settings::load_for("production", &configuration_directory()).expect("loads");
        assert!(!settings.fetch_policy().allow_loopback_http);
        assert_eq!(settings.server.host, "0.0.0.0");
    }
}
