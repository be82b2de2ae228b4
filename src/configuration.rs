//! Settings: `config/default.toml`, then `config/{APP_ENVIRONMENT}.toml`, then environment
//! variables `POPLITEAL__SECTION__KEY` (e.g. `POPLITEAL__SERVER__PORT=9000`). The folder is
//! `APP_CONFIG_DIR` when set, else `config` in the working directory.
//!
//! Parse, don't validate: every rule a configuration can break is checked here, once, when the
//! settings load, and a loaded `Settings` cannot hold a value that breaks one. Counts and durations
//! that must be positive are `NonZero*`; URLs, origins, the clock skew and the JSON depth are
//! types that only parse from a valid value; an issuer names where its keys are. An unknown key, a
//! value of the wrong type or out of range stops the start with a message that names the key (and
//! where it was set: a file or a `POPLITEAL__` variable). Each component then builds itself from
//! its own section (`FetchPolicy::from_settings`, `Authenticator::from_settings`, `Store::connect`,
//! ...). What needs I/O stays with its component and is checked at start: the JWKS files and the
//! site codes file are read, and the SQLite file's folder must exist (`Store::connect`).

use std::num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::limits::SERDE_JSON_MAX_DEPTH;

mod database_tls;
mod intake;
pub use database_tls::SslMode;
pub use intake::{IntakeClient, IntakeSettings};

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
    pub intake: IntakeSettings,
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

/// Reading what the prefetch lacks from the EHR's FHIR server (`fhirServer`); the fetch policy is
/// built from it (`fhir::fetch::FetchPolicy::from_settings`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSettings {
    /// The time budget of the whole fetch phase of one request, in milliseconds.
    pub fetch_budget_ms: NonZeroU64,
    /// Pages read per prefetch key, following Bundle `next` links.
    pub page_cap: NonZeroUsize,
    /// A FHIR server response larger than this is not read.
    pub max_response_bytes: NonZeroUsize,
    /// Origins `fhirServer` must match (`https://ehr.example.org`); empty: any https origin,
    /// and in production only at public addresses.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_origins: Vec<BareOrigin>,
    /// The bytes one hook call may read from the FHIR server in all (at least
    /// `max_response_bytes`).
    pub max_bytes_per_call: NonZeroUsize,
    /// The bytes all hook calls together may hold at once (read and not yet released): the bound
    /// on the memory fetching takes, however many calls fetch at once (at least
    /// `max_bytes_per_call`).
    pub max_bytes_in_flight: NonZeroUsize,
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
    pub public_url: HttpUrl,
    /// Request bodies above this size are refused with 413.
    pub max_body_bytes: NonZeroUsize,
    /// A request body must have arrived whole within this time (else 408, connection closed).
    pub body_read_timeout_ms: NonZeroU64,
    /// No more than this may pass between two chunks of a request body (else 408).
    pub body_idle_timeout_ms: NonZeroU64,
    /// Request headers (names and values together) above this size are refused with 431.
    pub max_header_bytes: NonZeroUsize,
    /// Open connections one client address may hold; more are closed as they are accepted.
    /// Behind a load balancer every connection comes from its address: size this for it.
    pub max_connections_per_address: NonZeroUsize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionnaireSettings {
    /// The base of the Questionnaire's canonical URL (`{base}/fhir/Questionnaire/posterior-knee-pain`).
    pub canonical_base: String,
    /// QuestionnaireResponses older than this many days are stale.
    pub stale_after_days: NonZeroU16,
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
    pub clock_skew_seconds: ClockSkew,
    /// Fetched key sets are used this long before they are fetched again.
    pub jwks_cache_ttl_seconds: NonZeroU64,
    /// A key set is fetched again for an unknown `kid` at most once per this many seconds (0: each
    /// time).
    pub jwks_refresh_min_interval_seconds: u64,
    /// A key set fetch gives up after this long.
    pub jwks_fetch_timeout_seconds: NonZeroU64,
    /// How many `jti`s (unexpired tokens) are remembered at most; when full, new tokens are
    /// refused rather than forgotten.
    pub replay_cache_capacity: NonZeroUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No authentication (local development and tests only).
    Off,
    /// Every request but `/health` and the Questionnaire carries `Authorization: Bearer <JWT>`.
    Jwt,
}

/// The largest clock skew accepted, in seconds (a larger one would let expired tokens through).
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 600;

/// The leeway for `exp`, `nbf` and `iat`: at most [`MAX_CLOCK_SKEW_SECONDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct ClockSkew(u64);

impl ClockSkew {
    pub fn seconds(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for ClockSkew {
    type Error = String;

    fn try_from(seconds: u64) -> Result<ClockSkew, String> {
        if seconds > MAX_CLOCK_SKEW_SECONDS {
            return Err(format!("the clock skew must be at most {MAX_CLOCK_SKEW_SECONDS} seconds (got {seconds})"));
        }
        Ok(ClockSkew(seconds))
    }
}

/// An EHR registered as a trusted issuer, with where its public keys are: `jwks_url` or
/// `jwks_file` (not both) and/or a `jku_allowlist`. Checked as it is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "IssuerFields")]
pub struct TrustedIssuer {
    /// The `iss` claim the EHR puts in its tokens, compared exactly.
    pub iss: String,
    /// A JWKS URL (https, or http on loopback) with the EHR's public keys.
    pub jwks_url: Option<KeySetUrl>,
    /// A local JWKS file with the EHR's public keys (read at start).
    pub jwks_file: Option<PathBuf>,
    /// The token header's `jku` is used only when it is one of these URLs.
    pub jku_allowlist: Vec<KeySetUrl>,
}

/// An issuer as written, before its rules are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerFields {
    iss: String,
    #[serde(default)]
    jwks_url: Option<KeySetUrl>,
    #[serde(default)]
    jwks_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "list_or_comma_separated")]
    jku_allowlist: Vec<KeySetUrl>,
}

impl TryFrom<IssuerFields> for TrustedIssuer {
    type Error = String;

    fn try_from(fields: IssuerFields) -> Result<TrustedIssuer, String> {
        let IssuerFields { iss, jwks_url, jwks_file, jku_allowlist } = fields;
        if iss.trim().is_empty() {
            return Err("an issuer has an empty iss".into());
        }
        if jwks_url.is_some() && jwks_file.is_some() {
            return Err(format!("{iss}: give jwks_url or jwks_file, not both"));
        }
        if jwks_url.is_none() && jwks_file.is_none() && jku_allowlist.is_empty() {
            return Err(format!("{iss}: needs jwks_url, jwks_file or jku_allowlist"));
        }
        Ok(TrustedIssuer { iss, jwks_url, jwks_file, jku_allowlist })
    }
}

/// Whether a URL's host is this machine (`localhost`, 127.0.0.0/8, `[::1]`).
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(host)) => host == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An absolute `http` or `https` URL, as written (`server.public_url`, `telemetry.otlp_endpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = String;

    fn try_from(text: String) -> Result<HttpUrl, String> {
        let text = text.trim();
        match url::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(HttpUrl(text.to_owned())),
            _ => Err(format!("{text:?} is not an http(s) URL like https://host.example.org")),
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a key set (JWKS) is fetched from: https, or plain http to this machine only (tests,
/// sidecars). Kept as written: the token header's `jku` is compared with it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct KeySetUrl(String);

impl KeySetUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeySetUrl {
    type Error = String;

    fn try_from(text: String) -> Result<KeySetUrl, String> {
        let text = text.trim();
        let url = url::Url::parse(text).map_err(|_| format!("{text:?} is not a URL"))?;
        match url.scheme() {
            "https" if url.host().is_some() => Ok(KeySetUrl(text.to_owned())),
            "http" if is_loopback(&url) => Ok(KeySetUrl(text.to_owned())),
            _ => Err(format!("{text:?}: key sets are fetched over https (plain http to loopback only)")),
        }
    }
}

/// An origin as browsers send it and as `fhirServer` is compared: `scheme://host[:port]` with an
/// http(s) scheme, lower case, no default port, nothing after it (a trailing `/` is dropped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct BareOrigin(String);

impl BareOrigin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BareOrigin {
    type Error = String;

    fn try_from(text: String) -> Result<BareOrigin, String> {
        let trimmed = text.trim();
        let bare = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let usable = url::Url::parse(bare)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.origin().ascii_serialization() == bare);
        if usable {
            Ok(BareOrigin(bare.to_owned()))
        } else {
            Err(format!("{trimmed:?} is not an origin like https://ehr.example.org (scheme, host and port only)"))
        }
    }
}

/// CORS for browser clients such as the CDS Hooks Sandbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins allowed to call from a browser (`https://sandbox.cds-hooks.org`); `*` allows any.
    /// A list in TOML, or comma-separated in `POPLITEAL__CORS__ALLOWED_ORIGINS`.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_origins: Vec<CorsOrigin>,
    /// Also allow browsers on this machine: `http://localhost:<port>`, `http://127.0.0.1:<port>`,
    /// `http://[::1]:<port>` (a locally run CDS Hooks Sandbox). True in local and test; refused
    /// in production.
    pub allow_loopback_origins: bool,
}

/// One entry of `cors.allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum CorsOrigin {
    /// `*`: any origin.
    Any,
    Exactly(BareOrigin),
}

impl TryFrom<String> for CorsOrigin {
    type Error = String;

    fn try_from(text: String) -> Result<CorsOrigin, String> {
        if text.trim() == "*" { Ok(CorsOrigin::Any) } else { BareOrigin::try_from(text).map(CorsOrigin::Exactly) }
    }
}

/// Limits that keep one client from taking the service down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// JSON bodies nested deeper than this are refused with 400.
    pub max_json_depth: JsonDepth,
    /// Sustained requests per second per client (its `iss` when authenticated, else its IP).
    pub requests_per_second: NonZeroU32,
    /// Requests a client may send at once above the sustained rate; more get 429.
    pub burst: NonZeroU32,
}

/// A JSON nesting depth from 1 to serde_json's own limit ([`SERDE_JSON_MAX_DEPTH`]): a deeper
/// one would never be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "usize")]
pub struct JsonDepth(usize);

impl JsonDepth {
    pub fn get(self) -> usize {
        self.0
    }
}

impl TryFrom<usize> for JsonDepth {
    type Error = String;

    fn try_from(depth: usize) -> Result<JsonDepth, String> {
        if (1..=SERDE_JSON_MAX_DEPTH).contains(&depth) {
            Ok(JsonDepth(depth))
        } else {
            Err(format!("the JSON depth must be between 1 and {SERDE_JSON_MAX_DEPTH} (got {depth})"))
        }
    }
}

/// A list from TOML, or a comma-separated string from an environment variable; each item parsed.
fn list_or_comma_separated<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<String, Error = String>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    let items: Vec<String> = match ListOrString::deserialize(deserializer)? {
        ListOrString::List(items) => items,
        ListOrString::String(text) => {
            text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
        }
    };
    items.into_iter().map(|item| T::try_from(item).map_err(serde::de::Error::custom)).collect()
}

/// An array of tables from TOML, or a JSON array in one environment variable (`name` says which
/// key, in errors); each item is checked as it is read.
fn tables_or_json<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    deserializer: D,
    name: &str,
) -> Result<Vec<T>, D::Error> {
    use serde::de::Error;
    let items = match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) if text.trim().is_empty() => Vec::new(),
        serde_json::Value::String(text) => match serde_json::from_str(&text) {
            Ok(serde_json::Value::Array(items)) => items,
            Ok(_) => return Err(D::Error::custom(format!("{name} must be a JSON array"))),
            Err(error) => return Err(D::Error::custom(format!("{name} must be a JSON array: {error}"))),
        },
        serde_json::Value::Array(items) => items,
        _ => return Err(D::Error::custom(format!("{name} must be [[{name}]] tables or a JSON array"))),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            serde_json::from_value(item).map_err(|error| D::Error::custom(format!("{name}[{index}]: {error}")))
        })
        .collect()
}

/// `[[auth.issuers]]` tables from TOML, or a JSON array in one environment variable. Each issuer
/// is checked as it is read; an `iss` listed twice is refused.
fn issuers_from_tables_or_json<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<TrustedIssuer>, D::Error> {
    use serde::de::Error;
    let issuers: Vec<TrustedIssuer> = tables_or_json(deserializer, "auth.issuers")?;
    for (index, issuer) in issuers.iter().enumerate() {
        if issuers[..index].iter().any(|known| known.iss == issuer.iss) {
            return Err(D::Error::custom(format!("auth.issuers: {} is listed twice", issuer.iss)));
        }
    }
    Ok(issuers)
}

/// Where feedback and the audit trail are stored (see `store`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` (the file is created when missing; its folder must exist),
    /// `sqlite::memory:` (one private in-memory database per process: tests), or
    /// `postgres://user:password@host:port/database`. A secret (it may carry a password): never
    /// logged, never quoted in an error.
    pub url: SecretString,
    /// The most connections the pool opens (an in-memory SQLite database always uses one).
    pub max_connections: NonZeroU32,
    /// How long a request waits for a connection or a lock before the answer is 503.
    pub timeout_ms: NonZeroU64,
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
    pub retention_days: NonZeroU32,
    /// How often the purge runs.
    pub purge_interval_seconds: NonZeroU64,
    /// The folder of the audit spool (an append-only local log the database is written from;
    /// see `audit`). One per process: a replica needs its own, on a disk that survives a
    /// restart. Unset: refused, except in the test environment (a temporary folder).
    #[serde(default, deserialize_with = "optional_path")]
    pub spool_dir: Option<PathBuf>,
    /// How long one audit write may take before it counts as failed.
    pub write_timeout_ms: NonZeroU64,
}

/// OpenTelemetry export (see `telemetry`): off unless `otlp_endpoint` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The OTLP/HTTP base URL of a collector (`http://otel-collector:4318`): traces go to
    /// `{endpoint}/v1/traces`, metrics to `{endpoint}/v1/metrics` (protobuf). Unset or empty: no
    /// export (logs only).
    #[serde(default, deserialize_with = "optional_http_url")]
    pub otlp_endpoint: Option<HttpUrl>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// How often metrics are exported.
    pub metrics_interval_ms: NonZeroU64,
}

/// An http(s) URL, or nothing when the value is empty (an environment variable set to "").
fn optional_http_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<HttpUrl>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    text.filter(|t| !t.trim().is_empty()).map(|t| HttpUrl::try_from(t).map_err(serde::de::Error::custom)).transpose()
}

impl TelemetrySettings {
    /// The endpoint when one is set.
    pub fn endpoint(&self) -> Option<&str> {
        self.otlp_endpoint.as_ref().map(HttpUrl::as_str)
    }
}

/// The shortest patient hash key accepted.
pub const MIN_PATIENT_HASH_KEY_CHARS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    #[error("APP_ENVIRONMENT must be one of local, test, production (got {0:?})")]
    UnknownEnvironment(String),
    #[error(
        "no configuration folder: {0} has no default.toml (set APP_CONFIG_DIR to the folder with \
         default.toml and the environment's file, or run from the folder that holds config/)"
    )]
    NoDirectory(String),
    #[error("configuration is invalid: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("configuration is invalid: {0}")]
    Rule(String),
}

/// The variable that names the configuration folder.
pub const CONFIG_DIR_VARIABLE: &str = "APP_CONFIG_DIR";

/// The folder with the configuration files: `APP_CONFIG_DIR` when set, else `config` in the
/// working directory. Never a path compiled into the binary: a deployed service reads the files
/// it was given, or refuses to start.
pub fn configuration_directory() -> Result<PathBuf, ConfigurationError> {
    configuration_directory_from(std::env::var_os(CONFIG_DIR_VARIABLE).filter(|value| !value.is_empty()))
}

fn configuration_directory_from(variable: Option<std::ffi::OsString>) -> Result<PathBuf, ConfigurationError> {
    let (directory, described) = match variable {
        Some(value) => {
            let directory = PathBuf::from(value);
            let described = format!("{CONFIG_DIR_VARIABLE}={}", directory.display());
            (directory, described)
        }
        None => (PathBuf::from("config"), format!("./config (and {CONFIG_DIR_VARIABLE} is not set)")),
    };
    if directory.join("default.toml").is_file() {
        Ok(directory)
    } else {
        Err(ConfigurationError::NoDirectory(described))
    }
}

/// Where a key's value came from, when the configuration can tell: a file, or a variable.
fn origin_of(settings: &config::Config, key: &str) -> Option<String> {
    // `get_table` keeps each value's origin (`get` would deserialise it away).
    let key = key.split('[').next().unwrap_or(key);
    let (section, name) = key.rsplit_once('.')?;
    let table = settings.get_table(section).ok()?;
    Some(match table.get(name)?.origin()? {
        "the environment" => format!("set by the variable POPLITEAL__{}", key.to_uppercase().replace('.', "__")),
        file => {
            let file = std::fs::canonicalize(file).map_or_else(|_| file.to_owned(), |path| path.display().to_string());
            format!("set in {file}")
        }
    })
}

/// The key a deserialisation error is about (an unknown field: the section and the field), and
/// whether it is an unknown one.
fn key_of(error: &config::ConfigError) -> Option<(String, bool)> {
    // A type error already says where its value came from.
    let config::ConfigError::At { key: Some(key), error, origin: None } = error else {
        return None;
    };
    let inner = error.to_string();
    let key = key.clone();
    let unknown = inner.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next());
    Some(match unknown {
        Some(field) => (format!("{key}.{field}"), true),
        None => (key, false),
    })
}

impl Settings {
    /// Loads the settings for the environment named by `APP_ENVIRONMENT` (default `local`) from
    /// the configuration folder (`APP_CONFIG_DIR`, else `./config`).
    pub fn load() -> Result<Settings, ConfigurationError> {
        let environment = std::env::var("APP_ENVIRONMENT").unwrap_or_else(|_| "local".to_owned());
        Settings::load_for(&environment, &configuration_directory()?)
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
        let loaded: Settings = settings.clone().try_deserialize().map_err(|error| {
            let Some((key, unknown)) = key_of(&error) else {
                return ConfigurationError::Invalid(error);
            };
            let origin = origin_of(&settings, &key).map(|origin| format!(" ({origin})")).unwrap_or_default();
            let what = if unknown { format!("{key} is not a setting") } else { key };
            ConfigurationError::Rule(format!("{what}{origin}: {error}"))
        })?;
        loaded.check()?;
        Ok(loaded)
    }

    /// The rules that span keys or guard a secret (whose value a type would print).
    fn check(&self) -> Result<(), ConfigurationError> {
        let rule = |text: &str| Err(ConfigurationError::Rule(text.to_owned()));
        if self.audit.patient_hash_key.expose_secret().chars().count() < MIN_PATIENT_HASH_KEY_CHARS {
            return rule(&format!("audit.patient_hash_key must be at least {MIN_PATIENT_HASH_KEY_CHARS} characters"));
        }
        let url = self.database.url.expose_secret();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return rule("database.url must start with sqlite: or postgres:// (the value is a secret: not shown)");
        }
        if self.audit.spool_dir.is_none() && self.environment != Environment::Test {
            return rule(
                "audit.spool_dir must be set (a folder of this process's own, on a disk that survives a restart)",
            );
        }
        if self.telemetry.service_name.trim().is_empty() {
            return rule("telemetry.service_name must not be empty");
        }
        if self.environment == Environment::Production && self.auth.mode == AuthMode::Off {
            return rule(
                "auth.mode = \"off\" is refused in production: EHR calls must be authenticated (set auth.mode = \"jwt\")",
            );
        }
        self.database.check_tls(self.environment)?;
        let fhir = &self.fhir;
        if fhir.max_bytes_per_call < fhir.max_response_bytes || fhir.max_bytes_in_flight < fhir.max_bytes_per_call {
            return rule(
                "fhir.max_bytes_per_call must be at least fhir.max_response_bytes, and fhir.max_bytes_in_flight at least fhir.max_bytes_per_call",
            );
        }
        crate::cors::check(&self.cors, self.environment).map_err(ConfigurationError::Rule)?;
        intake::check(&self.intake, self.environment).map_err(ConfigurationError::Rule)?;
        Ok(())
    }

    pub fn questionnaire_canonical(&self) -> String {
        format!("{}/fhir/Questionnaire/posterior-knee-pain", self.questionnaire.canonical_base.trim_end_matches('/'))
    }

    pub fn questionnaire_public_url(&self) -> String {
        format!("{}/fhir/Questionnaire/posterior-knee-pain", self.server.public_url.as_str().trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::fetch::FetchPolicy;

    /// The shipped folder: the tests run with the crate folder as the working directory.
    fn shipped() -> PathBuf {
        configuration_directory_from(None).expect("./config holds default.toml")
    }

    #[test]
    fn the_shipped_configuration_loads_for_every_environment() {
        for environment in ["local", "test", "production"] {
            let settings = load(environment, &[]);
            assert_eq!(settings.environment.as_str(), environment);
        }
        assert!(Settings::load_for("staging", &shipped()).is_err());
    }

    #[test]
    fn production_needs_a_patient_hash_key() {
        let error =
            Settings::load_with_variables("production", &shipped(), Some(Default::default())).expect_err("refused");
        assert!(error.to_string().contains("patient_hash_key"), "{error}");
    }

    #[test]
    fn production_never_allows_plain_http_to_loopback() {
        let settings = load("production", &[]);
        assert!(!FetchPolicy::from_settings(&settings.fhir, settings.environment).allow_loopback_http);
        assert!(FetchPolicy::from_settings(&settings.fhir, Environment::Test).allow_loopback_http);
        assert_eq!(settings.server.host, "0.0.0.0");
    }

    /// Production has no patient hash key in its files: tests give it one.
    const TEST_HASH_KEY: (&str, &str) =
        ("POPLITEAL__AUDIT__PATIENT_HASH_KEY", "a-test-key-of-at-least-32-characters!!");

    fn try_load(environment: &str, variables: &[(&str, &str)]) -> Result<Settings, ConfigurationError> {
        try_load_from(environment, &shipped(), variables)
    }

    fn try_load_from(
        environment: &str,
        directory: &Path,
        variables: &[(&str, &str)],
    ) -> Result<Settings, ConfigurationError> {
        let variables = variables
            .iter()
            .chain([&TEST_HASH_KEY])
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        Settings::load_with_variables(environment, directory, Some(variables))
    }

    fn load(environment: &str, variables: &[(&str, &str)]) -> Settings {
        try_load(environment, variables).expect("settings load")
    }

    /// The message of a refused load.
    fn refusal(variables: &[(&str, &str)]) -> String {
        try_load("production", variables).expect_err("refused").to_string()
    }

    fn key_set_url(text: &str) -> KeySetUrl {
        KeySetUrl::try_from(text.to_owned()).expect("a key set URL")
    }

    #[test]
    fn production_authenticates_with_jwt_and_local_and_test_do_not() {
        assert_eq!(load("production", &[]).auth.mode, AuthMode::Jwt);
        assert_eq!(load("local", &[]).auth.mode, AuthMode::Off);
        assert_eq!(load("test", &[]).auth.mode, AuthMode::Off);
        assert!(load("production", &[]).auth.issuers.is_empty());
    }

    #[test]
    fn production_refuses_auth_off_when_the_settings_load() {
        let error = refusal(&[("POPLITEAL__AUTH__MODE", "off")]);
        assert!(error.contains("auth.mode") && error.contains("production"), "{error}");
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
                    jwks_url: Some(key_set_url("https://ehr.example.org/jwks.json")),
                    jwks_file: None,
                    jku_allowlist: vec![],
                },
                TrustedIssuer {
                    iss: "https://other.example.net".into(),
                    jwks_url: None,
                    jwks_file: None,
                    jku_allowlist: vec![key_set_url("https://other.example.net/k.json")],
                },
            ]
        );
    }

    #[test]
    fn issuers_come_from_toml_tables() {
        let folder = tempfile::tempdir().expect("a folder");
        std::fs::copy(shipped().join("default.toml"), folder.path().join("default.toml")).expect("copied");
        let text = r#"
            [[auth.issuers]]
            iss = "https://ehr.example.org"
            jwks_file = "/etc/popliteal/ehr-jwks.json"

            [[auth.issuers]]
            iss = "https://other.example.net"
            jku_allowlist = ["https://other.example.net/a.json", "https://other.example.net/b.json"]
        "#;
        std::fs::write(folder.path().join("production.toml"), text).expect("written");
        let settings = try_load_from("production", folder.path(), &[]).expect("settings load");
        assert_eq!(settings.auth.issuers.len(), 2);
        assert_eq!(settings.auth.issuers[0].jwks_file, Some(PathBuf::from("/etc/popliteal/ehr-jwks.json")));
        assert_eq!(settings.auth.issuers[1].jku_allowlist.len(), 2);
    }

    #[test]
    fn intake_clients_come_from_toml_tables_or_one_json_variable() {
        let folder = tempfile::tempdir().expect("a folder");
        std::fs::copy(shipped().join("default.toml"), folder.path().join("default.toml")).expect("copied");
        let text = r#"
            [[intake.clients]]
            issuer = "https://ehr.example.org/fhir/r4"
            client_id = "popliteal-intake"
            other_origins = ["https://auth.example.org"]
        "#;
        std::fs::write(folder.path().join("production.toml"), text).expect("written");
        let settings = try_load_from("production", folder.path(), &[]).expect("settings load");
        assert_eq!(settings.intake.clients[0].issuer(), "https://ehr.example.org/fhir/r4");
        assert_eq!(settings.intake.clients[0].origins(), ["https://ehr.example.org", "https://auth.example.org"]);
        let from_variable = load(
            "production",
            &[("POPLITEAL__INTAKE__CLIENTS", r#"[{"issuer": "https://ehr.example.org/fhir", "client_id": "c1"}]"#)],
        );
        assert_eq!(from_variable.intake.clients[0].client_id, "c1");
        assert!(load("production", &[]).intake.clients.is_empty());
    }

    #[test]
    fn an_intake_client_over_plain_http_in_production_unnamed_or_listed_twice_is_refused_at_load() {
        for (clients, expected) in [
            (r#"[{"issuer": "http://ehr.example.org/fhir", "client_id": "c"}]"#, "must be https"),
            (r#"[{"issuer": "http://127.0.0.1:9/fhir", "client_id": "c"}]"#, "must be https"),
            (r#"[{"issuer": "https://ehr.example.org/fhir", "client_id": " "}]"#, "client_id must not be empty"),
            (
                r#"[{"issuer": "https://e.example/fhir", "client_id": "a"}, {"issuer": "https://e.example/fhir/", "client_id": "b"}]"#,
                "listed twice",
            ),
            (r#"[{"issuer": "https://e.example/fhir", "client_id": "a", "secret": "x"}]"#, "secret"),
        ] {
            let message = refusal(&[("POPLITEAL__INTAKE__CLIENTS", clients)]);
            assert!(message.contains(expected), "{clients}: {message}");
        }
        let local = try_load(
            "local",
            &[("POPLITEAL__INTAKE__CLIENTS", r#"[{"issuer": "http://127.0.0.1:9/fhir", "client_id": "c"}]"#)],
        );
        assert!(local.is_ok(), "an EHR on this machine over http is fine outside production");
    }

    #[test]
    fn an_issuer_without_keys_with_two_key_sources_over_plain_http_or_listed_twice_is_refused_at_load() {
        for (issuers, expected) in [
            (r#"[{"iss": "https://ehr.example.org"}]"#, "needs jwks_url, jwks_file or jku_allowlist"),
            (
                r#"[{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/k", "jwks_file": "/k"}]"#,
                "not both",
            ),
            (r#"[{"iss": "https://ehr.example.org", "jwks_url": "http://ehr.example.org/k"}]"#, "https"),
            (r#"[{"iss": "https://ehr.example.org", "jku_allowlist": ["ftp://ehr.example.org/k"]}]"#, "https"),
            (r#"[{"iss": " ", "jwks_url": "https://ehr.example.org/k"}]"#, "empty iss"),
            (r#"[{"iss": "a", "jwks_file": "/k"}, {"iss": "a", "jwks_file": "/j"}]"#, "listed twice"),
            (r#"[{"iss": "a", "jwks_file": "/k", "jwks_ulr": "https://a.example/k"}]"#, "jwks_ulr"),
        ] {
            let error = refusal(&[("POPLITEAL__AUTH__ISSUERS", issuers)]);
            assert!(error.contains(expected) && error.contains("auth.issuers"), "{issuers}: {error}");
        }
        let loopback = load(
            "production",
            &[("POPLITEAL__AUTH__ISSUERS", r#"[{"iss": "a", "jwks_url": "http://127.0.0.1:9000/jwks.json"}]"#)],
        );
        assert_eq!(loopback.auth.issuers[0].jwks_url, Some(key_set_url("http://127.0.0.1:9000/jwks.json")));
    }

    #[test]
    fn cors_origins_come_as_a_list_or_comma_separated() {
        let sandbox = BareOrigin::try_from("https://sandbox.cds-hooks.org".to_owned()).expect("an origin");
        assert_eq!(load("production", &[]).cors.allowed_origins, [CorsOrigin::Exactly(sandbox)]);
        let settings = load("production", &[("POPLITEAL__CORS__ALLOWED_ORIGINS", "https://a.example.org, *")]);
        let a = BareOrigin::try_from("https://a.example.org".to_owned()).expect("an origin");
        assert_eq!(settings.cors.allowed_origins, [CorsOrigin::Exactly(a), CorsOrigin::Any]);
    }

    #[test]
    fn an_origin_with_a_path_no_scheme_or_another_scheme_is_refused_naming_the_key() {
        for (variable, value) in [
            ("POPLITEAL__CORS__ALLOWED_ORIGINS", "https://sandbox.cds-hooks.org/app"),
            ("POPLITEAL__CORS__ALLOWED_ORIGINS", "sandbox.cds-hooks.org"),
            ("POPLITEAL__FHIR__ALLOWED_ORIGINS", "https://ehr.example.org/fhir"),
            ("POPLITEAL__FHIR__ALLOWED_ORIGINS", "ftp://ehr.example.org"),
            ("POPLITEAL__FHIR__ALLOWED_ORIGINS", "https://ehr.example.org?x=1"),
        ] {
            let error = refusal(&[(variable, value)]);
            let key = variable.trim_start_matches("POPLITEAL__").replace("__", ".").to_lowercase();
            assert!(error.contains(&key) && error.contains("not an origin"), "{value}: {error}");
        }
        let trailing_slash = load("production", &[("POPLITEAL__FHIR__ALLOWED_ORIGINS", "https://ehr.example.org/")]);
        assert_eq!(trailing_slash.fhir.allowed_origins[0].as_str(), "https://ehr.example.org");
    }

    #[test]
    fn zero_counts_and_durations_are_refused_naming_the_key() {
        for variable in [
            "POPLITEAL__FHIR__PAGE_CAP",
            "POPLITEAL__FHIR__FETCH_BUDGET_MS",
            "POPLITEAL__FHIR__MAX_RESPONSE_BYTES",
            "POPLITEAL__SERVER__MAX_BODY_BYTES",
            "POPLITEAL__SERVER__BODY_READ_TIMEOUT_MS",
            "POPLITEAL__SERVER__BODY_IDLE_TIMEOUT_MS",
            "POPLITEAL__SERVER__MAX_HEADER_BYTES",
            "POPLITEAL__SERVER__MAX_CONNECTIONS_PER_ADDRESS",
            "POPLITEAL__FHIR__MAX_BYTES_PER_CALL",
            "POPLITEAL__FHIR__MAX_BYTES_IN_FLIGHT",
            "POPLITEAL__LIMITS__REQUESTS_PER_SECOND",
            "POPLITEAL__LIMITS__BURST",
            "POPLITEAL__LIMITS__MAX_JSON_DEPTH",
            "POPLITEAL__AUTH__JWKS_FETCH_TIMEOUT_SECONDS",
            "POPLITEAL__AUTH__JWKS_CACHE_TTL_SECONDS",
            "POPLITEAL__AUTH__REPLAY_CACHE_CAPACITY",
            "POPLITEAL__DATABASE__MAX_CONNECTIONS",
            "POPLITEAL__DATABASE__TIMEOUT_MS",
            "POPLITEAL__AUDIT__RETENTION_DAYS",
            "POPLITEAL__AUDIT__PURGE_INTERVAL_SECONDS",
            "POPLITEAL__AUDIT__WRITE_TIMEOUT_MS",
            "POPLITEAL__TELEMETRY__METRICS_INTERVAL_MS",
            "POPLITEAL__QUESTIONNAIRE__STALE_AFTER_DAYS",
        ] {
            let error = refusal(&[(variable, "0")]);
            let key = variable.trim_start_matches("POPLITEAL__").replace("__", ".").to_lowercase();
            assert!(error.contains(&key), "{variable}: {error}");
            assert!(error.contains(variable), "the variable is named: {error}");
        }
    }

    #[test]
    fn a_json_depth_beyond_serde_json_and_a_clock_skew_beyond_ten_minutes_are_refused() {
        let error = refusal(&[("POPLITEAL__LIMITS__MAX_JSON_DEPTH", "128")]);
        assert!(error.contains("limits.max_json_depth") && error.contains("127"), "{error}");
        let error = refusal(&[("POPLITEAL__AUTH__CLOCK_SKEW_SECONDS", "601")]);
        assert!(error.contains("auth.clock_skew_seconds") && error.contains("600"), "{error}");
        assert_eq!(
            load("production", &[("POPLITEAL__AUTH__CLOCK_SKEW_SECONDS", "0")]).auth.clock_skew_seconds.seconds(),
            0
        );
    }

    #[test]
    fn a_per_call_byte_budget_below_one_response_or_above_the_process_budget_is_refused() {
        let error = refusal(&[("POPLITEAL__FHIR__MAX_BYTES_PER_CALL", "1024")]);
        assert!(error.contains("fhir.max_bytes_per_call"), "{error}");
        let error = refusal(&[("POPLITEAL__FHIR__MAX_BYTES_IN_FLIGHT", "1024")]);
        assert!(error.contains("fhir.max_bytes_in_flight"), "{error}");
    }

    #[test]
    fn public_url_and_otlp_endpoint_must_be_http_urls() {
        let error = refusal(&[("POPLITEAL__SERVER__PUBLIC_URL", "cds.example.org")]);
        assert!(error.contains("server.public_url"), "{error}");
        let settings = load("production", &[("POPLITEAL__SERVER__PUBLIC_URL", "https://cds.example.org")]);
        assert!(settings.server.public_url.is_https());
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
        let error = Settings::load_with_variables("production", &shipped(), Some(variables)).expect_err("refused");
        assert!(error.to_string().contains("cors.allow_loopback_origins"), "{error}");
    }

    #[test]
    fn telemetry_export_is_off_unless_an_endpoint_is_set() {
        assert_eq!(load("production", &[]).telemetry.endpoint(), None);
        assert_eq!(load("production", &[("POPLITEAL__TELEMETRY__OTLP_ENDPOINT", "")]).telemetry.endpoint(), None);
        let settings = load("production", &[("POPLITEAL__TELEMETRY__OTLP_ENDPOINT", "http://otel-collector:4318")]);
        assert_eq!(settings.telemetry.endpoint(), Some("http://otel-collector:4318"));
        assert_eq!(settings.telemetry.service_name, "popliteal");
        let error = refusal(&[("POPLITEAL__TELEMETRY__OTLP_ENDPOINT", "otel-collector:4318")]);
        assert!(error.contains("telemetry.otlp_endpoint"), "{error}");
    }

    #[test]
    fn an_unknown_key_stops_the_start_naming_it_and_the_variable() {
        let error = refusal(&[("POPLITEAL__FHIR__PAGE_CAPP", "9")]);
        assert!(error.contains("fhir.page_capp") && error.contains("POPLITEAL__FHIR__PAGE_CAPP"), "{error}");
    }

    #[test]
    fn a_misspelt_key_in_a_file_is_named_with_the_file() {
        let folder = tempfile::tempdir().expect("a folder");
        std::fs::copy(shipped().join("default.toml"), folder.path().join("default.toml")).expect("copied");
        let file = folder.path().join("production.toml");
        std::fs::write(&file, "[fhir]\nalowed_origins = [\"https://ehr.example.org\"]\n").expect("written");
        let error = try_load_from("production", folder.path(), &[]).expect_err("refused").to_string();
        assert!(error.contains("fhir.alowed_origins"), "{error}");
        assert!(error.contains(&file.display().to_string()), "{error}");
    }

    #[test]
    fn a_database_url_of_another_kind_is_refused_without_showing_it() {
        let error = refusal(&[("POPLITEAL__DATABASE__URL", "mysql://root:hunter2@db/popliteal")]);
        assert!(error.contains("database.url") && !error.contains("hunter2"), "{error}");
    }

    #[test]
    fn the_configuration_folder_is_app_config_dir_when_set_else_config_in_the_working_directory() {
        let folder = tempfile::tempdir().expect("a folder");
        let error = configuration_directory_from(Some(folder.path().into())).expect_err("no default.toml there");
        assert!(error.to_string().contains(&format!("APP_CONFIG_DIR={}", folder.path().display())), "{error}");
        std::fs::copy(shipped().join("default.toml"), folder.path().join("default.toml")).expect("copied");
        assert_eq!(configuration_directory_from(Some(folder.path().into())).expect("found"), folder.path());
        assert_eq!(configuration_directory_from(None).expect("found"), Path::new("config"));
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
        let error = refusal(&[("POPLITEAL__AUTH__ISSUERS", "[{\"iss\": ")]);
        assert!(error.contains("auth.issuers"), "{error}");
    }
}
