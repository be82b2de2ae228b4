//! Settings: `config/default.toml`, then `config/{APP_ENVIRONMENT}.toml`, then environment
//! variables `POPLITEAL__SECTION__KEY` (e.g. `POPLITEAL__SERVER__PORT=9000`).

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

mod database_tls;
pub use database_tls::SslMode;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub environment: Environment,
    pub server: ServerSettings,
    pub questionnaire: QuestionnaireSettings,
    pub fhir: FhirSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub cors: CorsSettings,
    pub limits: LimitSettings,
    pub database: DatabaseSettings,
    pub audit: AuditSettings,
    pub telemetry: TelemetrySettings,
    pub terminology: TerminologySettings,
}

/// The code lists the record is read through (see `terminology`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminologySettings {
    /// A file of the site's own codes to add to the shipped lists (one `<list> <system> <code>
    /// [side=...] [display]` per line); empty: none. Read at start: a bad line stops the start.
    #[serde(default, deserialize_with = "optional_path")]
    pub site_codes_file: Option<PathBuf>,
}

/// A path, or nothing when the value is empty (an environment variable set to "").
fn optional_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.filter(|t| !t.trim().is_empty()).map(PathBuf::from))
}

/// Reading what the prefetch lacks from the EHR's FHIR server (`fhirServer`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSettings {
    /// The time budget of the whole fetch phase of one request, in milliseconds.
    pub fetch_budget_ms: u64,
    /// Pages read per prefetch key, following Bundle `next` links.
    pub page_cap: usize,
    /// A FHIR server response larger than this is not read.
    pub max_response_bytes: usize,
    /// Origins `fhirServer` must match (`https://ehr.example.org`); empty: any https origin,
    /// and in production only at public addresses.
    pub allowed_origins: Vec<String>,
    /// The bytes one hook call may read from the FHIR server in all.
    pub max_bytes_per_call: usize,
    /// The bytes all hook calls together may hold at once (read and not yet released): the bound
    /// on the memory fetching takes, however many calls fetch at once.
    pub max_bytes_in_flight: usize,
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
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// The URL clients reach this service at (links to the Questionnaire are built from it).
    pub public_url: String,
    /// Request bodies above this size are refused with 413.
    pub max_body_bytes: usize,
    /// A request body must have arrived whole within this time (else 408, connection closed).
    pub body_read_timeout_ms: u64,
    /// No more than this may pass between two chunks of a request body (else 408).
    pub body_idle_timeout_ms: u64,
    /// Request headers (names and values together) above this size are refused with 431.
    pub max_header_bytes: usize,
    /// Open connections one client address may hold; more are closed as they are accepted.
    /// Behind a load balancer every connection comes from its address: size this for it.
    pub max_connections_per_address: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionnaireSettings {
    /// The base of the Questionnaire's canonical URL (`{base}/fhir/Questionnaire/posterior-knee-pain`).
    pub canonical_base: String,
    /// QuestionnaireResponses older than this many days are stale.
    pub stale_after_days: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// How EHRs authenticate (CDS Hooks 2.0 "Trusting CDS Clients").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `jwt` (the default; the only mode production accepts) or `off` (local and test only).
    pub mode: AuthMode,
    /// The EHRs whose JWTs are accepted. From a TOML array of tables `[[auth.issuers]]`, or from
    /// one variable holding a JSON array: `POPLITEAL__AUTH__ISSUERS='[{"iss": "...", ...}]'`.
    #[serde(default, deserialize_with = "issuers_from_tables_or_json")]
    pub issuers: Vec<TrustedIssuer>,
    /// Clocks may differ this much: `exp`, `nbf` and `iat` are checked with this leeway.
    pub clock_skew_seconds: u64,
    /// Fetched key sets are used this long before they are fetched again.
    pub jwks_cache_ttl_seconds: u64,
    /// A key set is fetched again for an unknown `kid` at most once per this many seconds.
    pub jwks_refresh_min_interval_seconds: u64,
    /// A key set fetch gives up after this long.
    pub jwks_fetch_timeout_seconds: u64,
    /// How many `jti`s (unexpired tokens) are remembered at most; when full, new tokens are
    /// refused rather than forgotten.
    pub replay_cache_capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication (local development and tests only).
    Off,
    /// Every request but `/health` and the Questionnaire carries `Authorization: Bearer <JWT>`.
    Jwt,
}

/// An EHR registered as a trusted issuer, with where its public keys are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The `iss` claim the EHR puts in its tokens, compared exactly.
    pub iss: String,
    /// A JWKS URL (https, or http on loopback) with the EHR's public keys.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A local JWKS file with the EHR's public keys.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The token header's `jku` is used only when it is one of these URLs.
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    pub jku_allowlist: Vec<String>,
}

/// CORS for browser clients such as the CDS Hooks Sandbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins allowed to call from a browser (`https://sandbox.cds-hooks.org`); `*` allows any.
    /// A list in TOML, or comma-separated in `POPLITEAL__CORS__ALLOWED_ORIGINS`.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_origins: Vec<String>,
    /// Also allow browsers on this machine: `http://localhost:<port>`, `http://127.0.0.1:<port>`,
    /// `http://[::1]:<port>` (a locally run CDS Hooks Sandbox). True in local and test; refused
    /// in production.
    pub allow_loopback_origins: bool,
}

/// Limits that keep one client from taking the service down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// JSON bodies nested deeper than this are refused with 400.
    pub max_json_depth: usize,
    /// Sustained requests per second per client (its `iss` when authenticated, else its IP).
    pub requests_per_second: u32,
    /// Requests a client may send at once above the sustained rate; more get 429.
    pub burst: u32,
}

/// A list from TOML, or a comma-separated string from an environment variable.
fn list_or_comma_separated<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(match ListOrString::deserialize(deserializer)? {
        ListOrString::List(items) => items,
        ListOrString::String(text) => {
            text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
        }
    })
}

/// `[[auth.issuers]]` tables from TOML, or a JSON array in one environment variable.
fn issuers_from_tables_or_json<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<TrustedIssuer>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TablesOrJson {
        Tables(Vec<TrustedIssuer>),
        Json(String),
    }
    match TablesOrJson::deserialize(deserializer)? {
        TablesOrJson::Tables(issuers) => Ok(issuers),
        TablesOrJson::Json(text) if text.trim().is_empty() => Ok(Vec::new()),
        TablesOrJson::Json(text) => serde_json::from_str(&text).map_err(|error| {
            serde::de::Error::custom(format!("auth.issuers must be a JSON array of issuers: {error}"))
        }),
    }
}

/// Where feedback and the audit trail are stored (see `store`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db?mode=rwc` (created on start), `sqlite::memory:` (one private
    /// in-memory database per process: tests), or `postgres://user:password@host:port/database`.
    /// A secret (it may carry a password): never logged.
    pub url: SecretString,
    /// The most connections the pool opens (an in-memory SQLite database always uses one).
    pub max_connections: u32,
    /// How long a request waits for a connection or a lock before the answer is 503.
    pub timeout_ms: u64,
    /// PostgreSQL only: `disable`, `require`, `verify-ca` or `verify-full`. Unset: `verify-full`
    /// for a server elsewhere, `disable` for one on this machine (see `database_tls`).
    #[serde(default, deserialize_with = "database_tls::optional_sslmode")]
    pub sslmode: Option<SslMode>,
    /// PostgreSQL only: a PEM file of the CA(s) that sign the server's certificate, trusted with
    /// the public roots. Needed by `verify-ca`; `verify-full` without it trusts the public roots.
    #[serde(default, deserialize_with = "optional_path")]
    pub ssl_root_cert: Option<PathBuf>,
    /// Production only: accept `sslmode = "disable"` to a PostgreSQL server elsewhere.
    #[serde(default)]
    pub allow_insecure: bool,
}

/// The audit trail of hook calls, and how long it and the feedback are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// The HMAC-SHA256 key the patient id is hashed with before it is stored: a secret, at least
    /// 32 characters. Production takes it from `POPLITEAL__AUDIT__PATIENT_HASH_KEY`.
    pub patient_hash_key: SecretString,
    /// Audit records and feedback older than this many days are purged.
    pub retention_days: u32,
    /// How often the purge runs.
    pub purge_interval_seconds: u64,
    /// The folder of the audit spool (an append-only local log the database is written from;
    /// see `audit`). One per process: a replica needs its own, on a disk that survives a
    /// restart. Unset: refused, except in the test environment (a temporary folder).
    #[serde(default, deserialize_with = "optional_path")]
    pub spool_dir: Option<PathBuf>,
    /// How long one audit write may take before it counts as failed.
    pub write_timeout_ms: u64,
}

/// OpenTelemetry export (see `telemetry`): off unless `otlp_endpoint` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The OTLP/HTTP base URL of a collector (`http://otel-collector:4318`): traces go to
    /// `{endpoint}/v1/traces`, metrics to `{endpoint}/v1/metrics` (protobuf). Unset or empty: no
    /// export (logs only).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// How often metrics are exported.
    pub metrics_interval_ms: u64,
}

impl TelemetrySettings {
    /// The endpoint when one is set (an empty variable counts as unset).
    pub fn endpoint(&self) -> Option<&str> {
        self.otlp_endpoint.as_deref().map(str::trim).filter(|endpoint| !endpoint.is_empty())
    }
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
        Settings::load_with_variables(environment, directory, None)
    }

    /// As `load_for`, with `variables` standing for the process environment when given.
    pub fn load_with_variables(
        environment: &str,
        directory: &Path,
        variables: Option<config::Map<String, String>>,
    ) -> Result<Settings, ConfigurationError> {
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
                    .with_list_parse_key("fhir.allowed_origins")
                    .source(variables),
            )
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
        if self.audit.retention_days == 0 || self.audit.purge_interval_seconds == 0 {
            return Err(ConfigurationError::Rule(
                "audit.retention_days and audit.purge_interval_seconds must be positive".into(),
            ));
        }
        if self.audit.spool_dir.is_none() && self.environment != Environment::Test {
            return Err(ConfigurationError::Rule(
                "audit.spool_dir must be set (a folder of this process's own, on a disk that survives a restart)"
                    .into(),
            ));
        }
        if self.database.max_connections == 0 || self.database.timeout_ms == 0 {
            return Err(ConfigurationError::Rule(
                "database.max_connections and database.timeout_ms must be positive".into(),
            ));
        }
        self.database.check_tls(self.environment)?;
        if self.telemetry.metrics_interval_ms == 0 || self.telemetry.service_name.trim().is_empty() {
            return Err(ConfigurationError::Rule(
                "telemetry.metrics_interval_ms must be positive and telemetry.service_name not empty".into(),
            ));
        }
        let fhir = &self.fhir;
        if fhir.max_response_bytes == 0
            || fhir.max_bytes_per_call < fhir.max_response_bytes
            || fhir.max_bytes_in_flight < fhir.max_bytes_per_call
        {
            return Err(ConfigurationError::Rule(
                "fhir.max_response_bytes must be positive, fhir.max_bytes_per_call at least fhir.max_response_bytes, and fhir.max_bytes_in_flight at least fhir.max_bytes_per_call".into(),
            ));
        }
        crate::cors::check(&self.cors, self.environment).map_err(ConfigurationError::Rule)?;
        if let Some(endpoint) = self.telemetry.endpoint() {
            let usable = url::Url::parse(endpoint).is_ok_and(|url| matches!(url.scheme(), "http" | "https"));
            if !usable {
                return Err(ConfigurationError::Rule(
                    "telemetry.otlp_endpoint must be an http(s) URL like http://otel-collector:4318".into(),
                ));
            }
        }
        Ok(())
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
            public_addresses_only: self.environment == Environment::Production && self.fhir.allowed_origins.is_empty(),
            max_bytes_per_call: self.fhir.max_bytes_per_call,
            max_bytes_in_flight: self.fhir.max_bytes_in_flight,
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
            let settings = load(environment, &[]);
            assert_eq!(settings.environment.as_str(), environment);
        }
        assert!(Settings::load_for("staging", &configuration_directory()).is_err());
    }

    #[test]
    fn production_needs_a_patient_hash_key() {
        let error = Settings::load_with_variables("production", &configuration_directory(), Some(Default::default()))
            .expect_err("refused");
        assert!(error.to_string().contains("patient_hash_key"), "{error}");
    }

    #[test]
    fn production_never_allows_plain_http_to_loopback() {
        let settings = load("production", &[]);
        assert!(!settings.fetch_policy().allow_loopback_http);
        assert_eq!(settings.server.host, "0.0.0.0");
    }

    /// Production has no patient hash key in its files: tests give it one.
    const TEST_HASH_KEY: (&str, &str) =
        ("POPLITEAL__AUDIT__PATIENT_HASH_KEY", "a-test-key-of-at-least-32-characters!!");

    fn load(environment: &str, variables: &[(&str, &str)]) -> Settings {
        let variables = variables
            .iter()
            .chain([&TEST_HASH_KEY])
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        Settings::load_with_variables(environment, &configuration_directory(), Some(variables)).expect("settings load")
    }

    #[test]
    fn production_authenticates_with_jwt_and_local_and_test_do_not() {
        assert_eq!(load("production", &[]).auth.mode, AuthMode::Jwt);
        assert_eq!(load("local", &[]).auth.mode, AuthMode::Off);
        assert_eq!(load("test", &[]).auth.mode, AuthMode::Off);
        assert!(load("production", &[]).auth.issuers.is_empty());
    }

    #[test]
    fn issuers_come_from_one_json_variable() {
        let settings = load(
            "production",
            &[(
                "POPLITEAL__AUTH__ISSUERS",
                r#"[{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks.json"},
                    {"iss": "https://other.example.net", "jku_allowlist": ["https://other.example.net/k.json"]}]"#,
            )],
        );
        assert_eq!(
            settings.auth.issuers,
            [
                TrustedIssuer {
                    iss: "https://ehr.example.org".into(),
                    jwks_url: Some("https://ehr.example.org/jwks.json".into()),
                    jwks_file: None,
                    jku_allowlist: vec![],
                },
                TrustedIssuer {
                    iss: "https://other.example.net".into(),
                    jwks_url: None,
                    jwks_file: None,
                    jku_allowlist: vec!["https://other.example.net/k.json".into()],
                },
            ]
        );
    }

    #[test]
    fn issuers_come_from_toml_tables() {
        let text = r#"
            [[auth.issuers]]
            iss = "https://ehr.example.org"
            jwks_file = "/etc/popliteal/ehr-jwks.json"

            [[auth.issuers]]
            iss = "https://other.example.net"
            jku_allowlist = ["https://other.example.net/a.json", "https://other.example.net/b.json"]
        "#;
        let settings: Settings = config::Config::builder()
            .add_source(config::File::from(configuration_directory().join("default.toml")))
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .set_override("environment", "production")
            .and_then(|builder| builder.set_override("audit.patient_hash_key", TEST_HASH_KEY.1))
            .and_then(|builder| builder.build())
            .and_then(config::Config::try_deserialize)
            .expect("settings load");
        assert_eq!(settings.auth.issuers.len(), 2);
        assert_eq!(settings.auth.issuers[0].jwks_file, Some(PathBuf::from("/etc/popliteal/ehr-jwks.json")));
        assert_eq!(settings.auth.issuers[1].jku_allowlist.len(), 2);
    }

    #[test]
    fn cors_origins_come_as_a_list_or_comma_separated() {
        assert_eq!(load("production", &[]).cors.allowed_origins, ["https://sandbox.cds-hooks.org"]);
        let settings =
            load("production", &[("POPLITEAL__CORS__ALLOWED_ORIGINS", "https://a.example.org, https://b.example.org")]);
        assert_eq!(settings.cors.allowed_origins, ["https://a.example.org", "https://b.example.org"]);
    }

    #[test]
    fn loopback_browser_origins_are_allowed_in_local_and_test_and_refused_in_production() {
        assert!(load("local", &[]).cors.allow_loopback_origins);
        assert!(load("test", &[]).cors.allow_loopback_origins);
        assert!(!load("production", &[]).cors.allow_loopback_origins);
        let variables = [("POPLITEAL__CORS__ALLOW_LOOPBACK_ORIGINS", "true"), TEST_HASH_KEY]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let error = Settings::load_with_variables("production", &configuration_directory(), Some(variables))
            .expect_err("refused");
        assert!(error.to_string().contains("cors.allow_loopback_origins"), "{error}");
    }

    #[test]
    fn telemetry_export_is_off_unless_an_endpoint_is_set() {
        assert_eq!(load("production", &[]).telemetry.endpoint(), None);
        assert_eq!(load("production", &[("POPLITEAL__TELEMETRY__OTLP_ENDPOINT", "")]).telemetry.endpoint(), None);
        let settings = load("production", &[("POPLITEAL__TELEMETRY__OTLP_ENDPOINT", "http://otel-collector:4318")]);
        assert_eq!(settings.telemetry.endpoint(), Some("http://otel-collector:4318"));
        assert_eq!(settings.telemetry.service_name, "popliteal");
        let variables = [
            ("POPLITEAL__TELEMETRY__OTLP_ENDPOINT".to_owned(), "otel-collector:4318".to_owned()),
            (TEST_HASH_KEY.0.to_owned(), TEST_HASH_KEY.1.to_owned()),
        ];
        let error = Settings::load_with_variables(
            "production",
            &configuration_directory(),
            Some(variables.into_iter().collect()),
        )
        .expect_err("refused");
        assert!(error.to_string().contains("telemetry.otlp_endpoint"), "{error}");
    }

    #[test]
    fn an_unknown_key_stops_the_start_naming_it() {
        let variables = [("POPLITEAL__FHIR__PAGE_CAPP", "9"), TEST_HASH_KEY]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let error = Settings::load_with_variables("production", &configuration_directory(), Some(variables))
            .expect_err("refused");
        assert!(error.to_string().contains("page_capp"), "{error}");
    }

    #[test]
    fn a_site_codes_file_comes_from_a_variable_and_an_empty_one_means_none() {
        assert_eq!(load("production", &[]).terminology.site_codes_file, None);
        let empty = load("production", &[("POPLITEAL__TERMINOLOGY__SITE_CODES_FILE", "")]);
        assert_eq!(empty.terminology.site_codes_file, None);
        let set = load("production", &[("POPLITEAL__TERMINOLOGY__SITE_CODES_FILE", "/etc/popliteal/site-codes.txt")]);
        assert_eq!(set.terminology.site_codes_file, Some(PathBuf::from("/etc/popliteal/site-codes.txt")));
    }

    #[test]
    fn a_malformed_issuers_variable_is_a_configuration_error() {
        let variables = [("POPLITEAL__AUTH__ISSUERS", "[{\"iss\": "), TEST_HASH_KEY]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let error = Settings::load_with_variables("production", &configuration_directory(), Some(variables))
            .expect_err("refused");
        assert!(error.to_string().contains("auth.issuers"), "{error}");
    }
}
