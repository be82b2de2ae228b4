//! TLS to PostgreSQL: `database.sslmode`, `database.ssl_root_cert`, `database.allow_insecure`.
//!
//! The pool is built from a URL (sqlx's `Any` driver), so the mode and the CA reach the
//! PostgreSQL driver as the URL parameters it reads (`sslmode`, `sslrootcert`), appended by
//! [`DatabaseSettings::connect_url`]. `sslmode` is always appended, `disable` included, so the
//! libpq-style `PGSSLMODE` variable of the process never decides. The URL itself may not carry
//! them: one place says how the database is reached, and the start-up rules see what is used.
//!
//! TLS is rustls with the Mozilla roots compiled in (sqlx's `tls-rustls-ring-webpki`):
//! `ssl_root_cert` adds a CA to them, it does not replace them.
//!
//! Every message names the keys and never quotes the URL (it may hold a password).

use std::net::IpAddr;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use super::{ConfigurationError, DatabaseSettings, Environment};

/// How connections to PostgreSQL are protected (libpq's `sslmode`; `allow` and `prefer`, which
/// fall back to or start with plaintext, are not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plaintext.
    Disable,
    /// TLS, the server's certificate not checked: safe from a listener, not from an impostor.
    Require,
    /// TLS, the certificate checked against the CAs but not its host name.
    VerifyCa,
    /// TLS, the certificate checked against the CAs and the URL's host.
    VerifyFull,
}

impl SslMode {
    /// The value as libpq and sqlx spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// A mode, or nothing when the value is empty (an environment variable set to "").
pub(super) fn optional_sslmode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SslMode>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => SslMode::deserialize(serde::de::value::StrDeserializer::<D::Error>::new(text)).map(Some),
    }
}

/// The URL parameters with which sqlx's PostgreSQL driver reads the mode and the CA, and the key
/// that says it here instead.
const TLS_URL_PARAMETERS: &[(&str, &str)] = &[
    ("sslmode", "database.sslmode"),
    ("ssl-mode", "database.sslmode"),
    ("sslrootcert", "database.ssl_root_cert"),
    ("ssl-root-cert", "database.ssl_root_cert"),
    ("ssl-ca", "database.ssl_root_cert"),
];

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Whether the server is on this machine: a loopback address, `localhost`, or a Unix socket (no
/// host, or a `host` parameter that is a path).
fn is_local(url: &url::Url) -> bool {
    let from_query = url.query_pairs().find(|(name, _)| name == "host").map(|(_, value)| value.into_owned());
    let host = from_query.or_else(|| url.host_str().map(str::to_owned)).unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.starts_with('/') || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(address)) => address.is_loopback() || address.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Ok(address) => address.is_loopback(),
        Err(_) => false,
    }
}

fn rule(message: String) -> ConfigurationError {
    ConfigurationError::Rule(message)
}

impl DatabaseSettings {
    /// `database.url` as a URL when it names PostgreSQL (the reason it cannot be read otherwise,
    /// never quoting it).
    fn postgres_url(&self) -> Option<Result<url::Url, String>> {
        let text = self.url.expose_secret();
        is_postgres(text).then(|| {
            url::Url::parse(text).map_err(|error| format!("database.url is not a readable PostgreSQL URL ({error})"))
        })
    }

    /// The mode connections to PostgreSQL use: `database.sslmode` when set; else `verify-full`
    /// for a server elsewhere and `disable` for one on this machine (loopback, `localhost` or a
    /// Unix socket). SQLite: `disable`.
    pub fn effective_sslmode(&self) -> SslMode {
        match (self.sslmode, self.postgres_url()) {
            (Some(mode), _) => mode,
            (None, Some(Ok(url))) if !is_local(&url) => SslMode::VerifyFull,
            _ => SslMode::Disable,
        }
    }

    /// The URL the pool connects with: for PostgreSQL `database.url` with `sslmode` (always)
    /// and `sslrootcert` (when `database.ssl_root_cert` is set) appended; SQLite's as it is.
    pub fn connect_url(&self) -> Result<SecretString, String> {
        let Some(url) = self.postgres_url() else {
            return Ok(self.url.clone());
        };
        let mut url = url?;
        if let Some((parameter, key)) =
            TLS_URL_PARAMETERS.iter().find(|(parameter, _)| url.query_pairs().any(|(name, _)| name == *parameter))
        {
            return Err(format!("database.url must not carry the {parameter} parameter: set {key} instead"));
        }
        let mode = self.effective_sslmode();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("sslmode", mode.as_str());
            if let Some(path) = &self.ssl_root_cert {
                query.append_pair("sslrootcert", &path.to_string_lossy());
            }
        }
        Ok(SecretString::from(String::from(url)))
    }

    /// The rules of the TLS keys (see the README, "Running against PostgreSQL").
    pub(super) fn check_tls(&self, environment: Environment) -> Result<(), ConfigurationError> {
        let Some(url) = self.postgres_url() else {
            if self.sslmode.is_some_and(|mode| mode != SslMode::Disable) || self.ssl_root_cert.is_some() {
                return Err(rule(
                    "database.sslmode and database.ssl_root_cert apply to PostgreSQL only, and database.url \
                     is not a postgres:// URL: remove them (or set database.sslmode = \"disable\")"
                        .into(),
                ));
            }
            return Ok(());
        };
        self.connect_url().map_err(rule)?;
        let url = url.map_err(rule)?;
        let mode = self.effective_sslmode();
        match (&self.ssl_root_cert, mode) {
            (Some(_), mode) if !mode.verifies() => {
                return Err(rule(format!(
                    "database.ssl_root_cert is read only with database.sslmode verify-ca or verify-full \
                     (the mode is {})",
                    mode.as_str()
                )));
            }
            (None, SslMode::VerifyCa) => {
                return Err(rule(
                    "database.sslmode = \"verify-ca\" needs database.ssl_root_cert (the CA that signed the \
                     server's certificate); against the public roots use verify-full"
                        .into(),
                ));
            }
            (Some(path), _) => check_root_cert(path)?,
            (None, _) => {}
        }
        if environment == Environment::Production && mode == SslMode::Disable && !is_local(&url) && !self.allow_insecure
        {
            return Err(rule(
                "database.sslmode is disable and the PostgreSQL server is not on this machine: production \
                 refuses a plaintext database connection. Set database.sslmode = \"verify-full\" (with \
                 database.ssl_root_cert for a private CA), or database.allow_insecure = true to accept it"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The CA file must be readable and hold at least one PEM certificate (sqlx reads it at each
/// connection: a bad file found only then would make every connection fail).
fn check_root_cert(path: &Path) -> Result<(), ConfigurationError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| rule(format!("database.ssl_root_cert {} cannot be read: {error}", path.display())))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(rule(format!("database.ssl_root_cert {} holds no PEM certificate", path.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const PASSWORD: &str = "s3cret-pass";

    /// The test configuration's database section on `url`.
    fn settings(url: &str) -> DatabaseSettings {
        let mut settings = crate::configuration::Settings::load_for(
            "test",
            &crate::configuration::configuration_directory().expect("the config folder"),
        )
        .expect("test settings load")
        .database;
        settings.url = SecretString::from(url.to_owned());
        settings
    }

    fn remote() -> DatabaseSettings {
        settings(&format!("postgres://popliteal:{PASSWORD}@db.example.org:5432/popliteal"))
    }

    fn with(mut settings: DatabaseSettings, mode: SslMode) -> DatabaseSettings {
        settings.sslmode = Some(mode);
        settings
    }

    /// A CA file that exists (any PEM certificate will do for the settings rules).
    fn ca_file() -> (tempfile::TempDir, PathBuf) {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let path = directory.path().join("ca.pem");
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").expect("written");
        (directory, path)
    }

    fn refusal(settings: &DatabaseSettings, environment: Environment) -> String {
        let message = settings.check_tls(environment).expect_err("refused").to_string();
        assert!(!message.contains(PASSWORD), "the message quotes the URL: {message}");
        message
    }

    #[test]
    fn the_keys_come_from_variables_and_production_names_allow_insecure_when_refusing() {
        let load = |pairs: &[(&str, &str)]| {
            let variables = [
                ("POPLITEAL__AUDIT__PATIENT_HASH_KEY", "a-test-key-of-at-least-32-characters!!"),
                ("POPLITEAL__DATABASE__URL", "postgres://popliteal:s3cret-pass@db.example.org:5432/popliteal"),
            ]
            .iter()
            .chain(pairs)
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
            let directory = crate::configuration::configuration_directory().expect("the config folder");
            crate::configuration::Settings::load_with_variables("production", &directory, Some(variables))
        };
        let settings = load(&[("POPLITEAL__DATABASE__SSLMODE", "")]).expect("an empty mode is unset");
        assert_eq!((settings.database.sslmode, settings.database.effective_sslmode()), (None, SslMode::VerifyFull));
        let message = load(&[("POPLITEAL__DATABASE__SSLMODE", "disable")]).expect_err("refused").to_string();
        assert!(message.contains("database.allow_insecure") && !message.contains(PASSWORD), "{message}");
        let allowed =
            load(&[("POPLITEAL__DATABASE__SSLMODE", "disable"), ("POPLITEAL__DATABASE__ALLOW_INSECURE", "true")]);
        assert_eq!(allowed.expect("allowed").database.effective_sslmode(), SslMode::Disable);
        assert!(load(&[("POPLITEAL__DATABASE__SSLMODE", "prefer")]).is_err(), "prefer is not offered");
    }

    #[test]
    fn the_mode_is_verify_full_for_a_server_elsewhere_and_disable_on_this_machine_unless_set() {
        assert_eq!(remote().effective_sslmode(), SslMode::VerifyFull);
        for local in [
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://postgres@localhost/test",
            "postgresql://postgres@[::1]:5432/test",
            "postgres:///test?host=/var/run/postgresql",
        ] {
            assert_eq!(settings(local).effective_sslmode(), SslMode::Disable, "{local}");
        }
        assert_eq!(with(remote(), SslMode::Require).effective_sslmode(), SslMode::Require);
        assert_eq!(settings("sqlite::memory:").effective_sslmode(), SslMode::Disable);
    }

    #[test]
    fn the_connect_url_carries_the_mode_and_the_ca() {
        let (_directory, ca) = ca_file();
        let mut settings = with(remote(), SslMode::VerifyFull);
        settings.ssl_root_cert = Some(ca.clone());
        let url = url::Url::parse(settings.connect_url().expect("usable").expose_secret()).expect("a URL");
        let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(
            pairs,
            [("sslmode".into(), "verify-full".into()), ("sslrootcert".into(), ca.to_string_lossy().into_owned())]
        );
        assert_eq!(url.password(), Some(PASSWORD));
        let local = settings_with_options("postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3Dx");
        assert!(local.ends_with("?options=-c%20search_path%3Dx&sslmode=disable"), "{local}");
        assert_eq!(self::settings("sqlite::memory:").connect_url().expect("as is").expose_secret(), "sqlite::memory:");
    }

    fn settings_with_options(url: &str) -> String {
        settings(url).connect_url().expect("usable").expose_secret().to_owned()
    }

    #[test]
    fn a_url_carrying_tls_parameters_is_refused_naming_the_key_to_use() {
        for (parameter, key) in
            [("sslmode=require", "database.sslmode"), ("sslrootcert=/etc/ca.pem", "database.ssl_root_cert")]
        {
            let url = format!("postgres://popliteal:{PASSWORD}@db.example.org/popliteal?{parameter}");
            let message = refusal(&settings(&url), Environment::Local);
            assert!(message.contains(key) && message.contains(parameter.split('=').next().unwrap_or_default()));
        }
    }

    #[test]
    fn tls_settings_with_sqlite_are_refused_naming_the_key() {
        let message =
            refusal(&with(settings("sqlite://popliteal.db?mode=rwc"), SslMode::VerifyFull), Environment::Local);
        assert!(message.contains("database.sslmode"), "{message}");
        assert!(with(settings("sqlite::memory:"), SslMode::Disable).check_tls(Environment::Production).is_ok());
        assert!(settings("sqlite::memory:").check_tls(Environment::Production).is_ok());
    }

    #[test]
    fn verify_ca_needs_a_ca_and_a_ca_needs_a_verifying_mode() {
        let message = refusal(&with(remote(), SslMode::VerifyCa), Environment::Local);
        assert!(message.contains("database.ssl_root_cert"), "{message}");
        let (_directory, ca) = ca_file();
        let mut require = with(remote(), SslMode::Require);
        require.ssl_root_cert = Some(ca.clone());
        assert!(refusal(&require, Environment::Local).contains("database.ssl_root_cert"));
        let mut verify_ca = with(remote(), SslMode::VerifyCa);
        verify_ca.ssl_root_cert = Some(ca);
        assert!(verify_ca.check_tls(Environment::Production).is_ok());
        // verify-full without a CA file: the public roots.
        assert!(with(remote(), SslMode::VerifyFull).check_tls(Environment::Production).is_ok());
    }

    #[test]
    fn a_ca_file_that_cannot_be_read_or_holds_no_certificate_is_refused() {
        let mut settings = with(remote(), SslMode::VerifyFull);
        settings.ssl_root_cert = Some(PathBuf::from("/nonexistent/ca.pem"));
        assert!(refusal(&settings, Environment::Local).contains("database.ssl_root_cert /nonexistent/ca.pem"));
        let (directory, _) = ca_file();
        let empty = directory.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").expect("written");
        settings.ssl_root_cert = Some(empty);
        assert!(refusal(&settings, Environment::Local).contains("holds no PEM certificate"));
    }

    #[test]
    fn production_refuses_plaintext_to_a_server_elsewhere_unless_allowed() {
        let plaintext = with(remote(), SslMode::Disable);
        let message = refusal(&plaintext, Environment::Production);
        assert!(message.contains("database.allow_insecure") && message.contains("database.sslmode"), "{message}");
        // By address as well as by name.
        let by_address = with(settings("postgres://popliteal:x@10.0.0.5:5432/popliteal"), SslMode::Disable);
        assert!(by_address.check_tls(Environment::Production).is_err());
        let mut allowed = plaintext.clone();
        allowed.allow_insecure = true;
        assert!(allowed.check_tls(Environment::Production).is_ok());
        // Elsewhere than production, and on this machine, plaintext is the operator's choice.
        assert!(plaintext.check_tls(Environment::Local).is_ok());
        assert!(plaintext.check_tls(Environment::Test).is_ok());
        for local in ["postgres://postgres@127.0.0.1:5432/test", "postgres:///popliteal?host=/run/postgresql"] {
            assert!(with(settings(local), SslMode::Disable).check_tls(Environment::Production).is_ok(), "{local}");
        }
        // TLS without verification is not plaintext.
        assert!(with(remote(), SslMode::Require).check_tls(Environment::Production).is_ok());
        // Unset: verify-full, accepted.
        assert!(remote().check_tls(Environment::Production).is_ok());
    }
}
