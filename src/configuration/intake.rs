//! `[intake]`: the SMART on FHIR intake app (`crate::intake`), and the EHRs it is registered with.

use std::num::NonZeroU64;

use serde::{Deserialize, Deserializer};

use super::{BareOrigin, Environment, HttpUrl, is_loopback};

/// The intake app's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeSettings {
    /// The EHRs the app may be launched from, each with the client id it was registered under.
    /// `[[intake.clients]]` tables, or one variable holding a JSON array:
    /// `POPLITEAL__INTAKE__CLIENTS='[{"issuer": "...", "client_id": "..."}]'`.
    #[serde(default, deserialize_with = "clients_from_tables_or_json")]
    pub clients: Vec<IntakeClient>,
    /// The app gives up on the EHR's answer to its QuestionnaireResponse create after this long
    /// (the answers stay on screen, with a retry).
    pub write_timeout_ms: NonZeroU64,
}

/// One EHR the app is registered with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeClient {
    /// The EHR's FHIR base URL, exactly as it sends it as `iss` in a launch.
    pub issuer: HttpUrl,
    /// The client id the EHR gave the app.
    pub client_id: String,
    /// Other origins of that EHR the app's page must reach or be framed by: its authorization
    /// server's, when it is not at the FHIR server's origin, and its user interface's.
    #[serde(default)]
    pub other_origins: Vec<BareOrigin>,
}

impl IntakeClient {
    /// The issuer as the app compares it: without a trailing `/`.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str().trim_end_matches('/')
    }

    /// The issuer's origin and the other origins: what the page may connect to and be framed by.
    pub fn origins(&self) -> Vec<String> {
        let issuer = url::Url::parse(self.issuer.as_str()).map(|url| url.origin().ascii_serialization());
        issuer.into_iter().chain(self.other_origins.iter().map(|origin| origin.as_str().to_owned())).collect()
    }
}

/// `[[intake.clients]]` tables from TOML, or a JSON array in one environment variable; an issuer
/// listed twice is refused.
fn clients_from_tables_or_json<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IntakeClient>, D::Error> {
    use serde::de::Error;
    let clients: Vec<IntakeClient> = super::tables_or_json(deserializer, "intake.clients")?;
    for (index, client) in clients.iter().enumerate() {
        if client.client_id.trim().is_empty() {
            return Err(D::Error::custom(format!("intake.clients[{index}]: client_id must not be empty")));
        }
        if clients[..index].iter().any(|known| known.issuer() == client.issuer()) {
            return Err(D::Error::custom(format!("intake.clients: {} is listed twice", client.issuer())));
        }
    }
    Ok(clients)
}

/// The rule a type cannot hold: an issuer is https, or plain http to this machine outside
/// production (tests, a local EHR).
pub(super) fn check(settings: &IntakeSettings, environment: Environment) -> Result<(), String> {
    for client in &settings.clients {
        let url = url::Url::parse(client.issuer.as_str()).map_err(|error| error.to_string())?;
        let local_http = url.scheme() == "http" && is_loopback(&url) && environment != Environment::Production;
        if url.scheme() != "https" && !local_http {
            return Err(format!(
                "intake.clients: {} must be https (plain http to this machine only, and not in production)",
                client.issuer()
            ));
        }
    }
    Ok(())
}
