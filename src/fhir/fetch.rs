//! Reading from the EHR's FHIR server: where the service may send the token (`origin_allowed`),
//! the service's query templates filled for this call (`fill_template`), and one bounded GET
//! (`Fetcher::get`). `assembly` decides what to read and reads each page into views.
//!
//! reqwest, not fhir-sdk's client (which announces `fhirVersion=4.3` to R4 servers): `Accept:
//! application/fhir+json`. The token is sent only to the allowed `fhirServer` origin, never
//! follows a redirect or a link to another origin, and is never logged. Each request carries the
//! W3C `traceparent` of the current span, so the EHR's traces join ours; spans record the key and
//! the result, never the URL (it names the patient).

use std::time::Duration;

use tokio::time::Instant;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use url::Url;

use super::record::Cause;
use crate::configuration::{Environment, FhirSettings};
use crate::protocol::request::{AccessToken, HookRequest};

/// How fetching is allowed to happen.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// The whole fetch phase of one request.
    pub budget: Duration,
    /// Pages read per key, the first included.
    pub page_cap: usize,
    /// One response body larger than this is refused.
    pub max_response_bytes: usize,
    /// Origins (`https://ehr.example.org`) fhirServer must match; empty: any https origin.
    pub allowed_origins: Vec<String>,
    /// Whether `http://127.0.0.1` and `http://localhost` are allowed (local and test only).
    pub allow_loopback_http: bool,
}

impl FetchPolicy {
    /// The policy the `fhir` settings ask for: plain http to loopback only in local and test.
    pub fn from_settings(settings: &FhirSettings, environment: Environment) -> FetchPolicy {
        FetchPolicy {
            budget: Duration::from_millis(settings.fetch_budget_ms.get()),
            page_cap: settings.page_cap.get(),
            max_response_bytes: settings.max_response_bytes.get(),
            allowed_origins: settings.allowed_origins.iter().map(|origin| origin.as_str().to_owned()).collect(),
            allow_loopback_http: matches!(environment, Environment::Local | Environment::Test),
        }
    }
}

/// A URL's origin, as `https://host:port`.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Whether the service may send a token to this FHIR server.
pub fn origin_allowed(server: &Url, policy: &FetchPolicy) -> bool {
    let loopback = matches!(server.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let scheme_ok = server.scheme() == "https" || (server.scheme() == "http" && loopback && policy.allow_loopback_http);
    if !scheme_ok {
        return false;
    }
    if policy.allowed_origins.is_empty() {
        return true;
    }
    let origin = origin(server);
    policy.allowed_origins.iter().any(|allowed| allowed.trim_end_matches('/') == origin)
}

/// Fills `{{context.x}}` and `{{userPractitionerId}}`-style tokens, percent-encoding values.
pub fn fill_template(template: &str, request: &HookRequest) -> String {
    let context = &request.context;
    let user = context.user_id.as_str();
    let user_id_of = |prefix: &str| user.strip_prefix(prefix).unwrap_or_default().to_owned();
    let tokens: [(&str, String); 7] = [
        ("{{context.patientId}}", context.patient_id.clone()),
        ("{{context.userId}}", context.user_id.clone()),
        ("{{context.encounterId}}", context.encounter_id.clone().unwrap_or_default()),
        ("{{userPractitionerId}}", user_id_of("Practitioner/")),
        ("{{userPractitionerRoleId}}", user_id_of("PractitionerRole/")),
        ("{{userPatientId}}", user_id_of("Patient/")),
        ("{{userRelatedPersonId}}", user_id_of("RelatedPerson/")),
    ];
    let mut text = template.to_owned();
    for (token, value) in tokens {
        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        text = text.replace(token, &encoded);
    }
    text
}

/// One call's reads from the FHIR server: its origin, its token and its deadline.
pub struct Fetcher<'a> {
    pub client: &'a reqwest::Client,
    pub token: Option<&'a AccessToken>,
    /// The origin of `fhirServer`: every URL read must have it.
    pub origin: String,
    pub policy: &'a FetchPolicy,
    /// When the whole fetch phase of the call must be over.
    pub deadline: Instant,
}

impl Fetcher<'_> {
    /// GETs one URL of the server's origin, within the deadline and the size limit.
    pub async fn get(&self, url: &Url) -> Result<Vec<u8>, Cause> {
        if origin(url) != self.origin {
            return Err(Cause::OriginNotAllowed);
        }
        let mut request = self.client.get(url.clone()).header("Accept", "application/fhir+json");
        let mut trace_context = reqwest::header::HeaderMap::new();
        let span_context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&span_context, &mut opentelemetry_http::HeaderInjector(&mut trace_context));
        });
        request = request.headers(trace_context);
        if let Some(token) = self.token {
            request = request.bearer_auth(token.expose());
        }
        let mut response = tokio::time::timeout_at(self.deadline, request.send())
            .await
            .map_err(|_| Cause::Timeout)?
            .map_err(|e| if e.is_timeout() { Cause::Timeout } else { Cause::Network })?;
        if !response.status().is_success() {
            return Err(Cause::Status(response.status().as_u16()));
        }
        if response.content_length().is_some_and(|length| length > self.policy.max_response_bytes as u64) {
            return Err(Cause::TooLarge);
        }
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(self.deadline, response.chunk())
                .await
                .map_err(|_| Cause::Timeout)?
                .map_err(|_| Cause::Network)?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > self.policy.max_response_bytes {
                return Err(Cause::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], loopback: bool) -> FetchPolicy {
        FetchPolicy {
            budget: Duration::from_secs(2),
            page_cap: 5,
            max_response_bytes: 1 << 20,
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allow_loopback_http: loopback,
        }
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a URL")
    }

    #[test]
    fn any_https_origin_is_allowed_by_default_but_plain_http_only_on_loopback_when_enabled() {
        assert!(origin_allowed(&url("https://ehr.example.org/fhir/"), &policy(&[], false)));
        assert!(!origin_allowed(&url("http://ehr.example.org/fhir/"), &policy(&[], true)));
        assert!(!origin_allowed(&url("http://127.0.0.1:9000/fhir/"), &policy(&[], false)));
        assert!(origin_allowed(&url("http://127.0.0.1:9000/fhir/"), &policy(&[], true)));
    }

    #[test]
    fn a_configured_allowlist_admits_only_its_origins() {
        let policy = policy(&["https://ehr.example.org"], false);
        assert!(origin_allowed(&url("https://ehr.example.org/r4/"), &policy));
        assert!(!origin_allowed(&url("https://evil.example.net/r4/"), &policy));
        assert!(!origin_allowed(&url("https://ehr.example.org:8443/r4/"), &policy));
    }

    #[test]
    fn template_tokens_are_filled_and_encoded() {
        let body =
            r#"{"hook":"patient-view","hookInstance":"h","context":{"userId":"Practitioner/dr 1","patientId":"p&1"}}"#;
        let request = HookRequest::parse(body.as_bytes()).expect("valid");
        assert_eq!(
            fill_template("Condition?patient={{context.patientId}}&who={{userPractitionerId}}", &request),
            "Condition?patient=p%261&who=dr+1"
        );
    }
}
