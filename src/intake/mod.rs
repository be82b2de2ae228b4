//! The SMART on FHIR intake app (SMART App Launch 2.0): static pages and scripts served from the
//! binary under `/intake/` (`assets`), the EHRs it is registered with, the scopes it asks for,
//! and the Content-Security-Policy its pages are served with. The app itself runs in the browser
//! (`web/intake/`): fhirclient does the launch (PKCE S256, `state`), lforms renders the
//! Questionnaire; the service reads the record for it (`routes::intake`), with the app's token.

pub mod assets;
pub mod scopes;

use crate::catalogue::{Catalogue, ServiceKind};
use crate::configuration::{IntakeClient, IntakeSettings};

pub use scopes::Scopes;

/// The intake app as configured.
#[derive(Debug, Clone)]
pub struct IntakeApp {
    clients: Vec<IntakeClient>,
    /// The header every page and script is served with.
    pub content_security_policy: String,
    pub scopes: Scopes,
    pub write_timeout_ms: u64,
}

impl IntakeApp {
    pub fn from_settings(settings: &IntakeSettings, catalogue: &Catalogue) -> IntakeApp {
        IntakeApp {
            content_security_policy: content_security_policy(&settings.clients),
            scopes: Scopes::for_templates(catalogue.templates(ServiceKind::PatientView)),
            write_timeout_ms: settings.write_timeout_ms.get(),
            clients: settings.clients.clone(),
        }
    }

    /// The registration of the EHR whose FHIR base URL is `issuer` (compared without a trailing
    /// `/`), if it is registered.
    pub fn client_for(&self, issuer: &str) -> Option<&IntakeClient> {
        let issuer = issuer.trim_end_matches('/');
        self.clients.iter().find(|client| client.issuer() == issuer)
    }
}

/// Scripts, styles, images and fonts from the service's own origin only (lforms' components set
/// styles at run time, so styles may also be inline; no inline or evaluated script). The page
/// connects to the service and to the registered EHRs (their FHIR servers and authorization
/// servers), may be framed by those EHRs only, and posts no forms anywhere.
fn content_security_policy(clients: &[IntakeClient]) -> String {
    let mut origins: Vec<String> = clients.iter().flat_map(IntakeClient::origins).collect();
    origins.sort();
    origins.dedup();
    let ehrs = if origins.is_empty() { String::new() } else { format!(" {}", origins.join(" ")) };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         font-src 'self'; connect-src 'self'{ehrs}; frame-ancestors 'self'{ehrs}; form-action 'none'; \
         base-uri 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(issuer: &str, other: &[&str]) -> IntakeClient {
        serde_json::from_value(serde_json::json!({
            "issuer": issuer, "client_id": "popliteal-intake", "other_origins": other
        }))
        .expect("a client")
    }

    #[test]
    fn the_policy_allows_scripts_from_the_service_only_and_names_each_registered_ehr_origin() {
        let policy = content_security_policy(&[
            client("https://ehr.example.org/fhir/r4", &["https://auth.example.org"]),
            client("https://ehr.example.org/other", &[]),
        ]);
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe-eval"), "{policy}");
        assert!(policy.contains("connect-src 'self' https://auth.example.org https://ehr.example.org;"), "{policy}");
        assert!(
            policy.contains("frame-ancestors 'self' https://auth.example.org https://ehr.example.org;"),
            "{policy}"
        );
    }

    #[test]
    fn without_registered_ehrs_the_page_connects_to_the_service_only() {
        let policy = content_security_policy(&[]);
        assert!(policy.contains("connect-src 'self';"), "{policy}");
    }
}
