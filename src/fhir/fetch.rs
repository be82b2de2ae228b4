//! Reading from the EHR's FHIR server: where the service may send the token (`check_server`),
//! the service's query templates filled for this call (`fill_template`), and one bounded GET
//! (`Fetcher::get`). `assembly` decides what to read and reads each page into views.
//!
//! Bounded three ways: the time budget of the call, the size of one answer, and the bytes read
//! (`budget`: per call and for the whole process). In production a `fhirServer` must be at
//! public addresses unless its origin is listed (`address`). A URL with a user name or password
//! in it is never followed (the HTTP client would send them as Basic credentials).
//!
//! reqwest, not fhir-sdk's client (which announces `fhirVersion=4.3` to R4 servers): `Accept:
//! application/fhir+json`. The token is sent only to the allowed `fhirServer` origin, never
//! follows a redirect or a link to another origin, and is never logged. Each request carries the
//! W3C `traceparent` of the current span, so the EHR's traces join ours; spans record the key and
//! the result, never the URL (it names the patient).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use url::Url;

use super::address::{self, PublicAddressResolver};
use super::budget::{ByteBudget, CallBytes};
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
    /// Whether `fhirServer` must be at public unicast addresses (production, when no origin is
    /// listed: a listed origin is trusted as the operator named it).
    pub public_addresses_only: bool,
    /// The bytes one call may read from the FHIR server in all.
    pub max_bytes_per_call: usize,
    /// The bytes all calls together may hold at once.
    pub max_bytes_in_flight: usize,
}

/// The EHRs' FHIR servers as the service reaches them: the HTTP client (no redirects, the
/// resolver that refuses private addresses when the policy says so), the policy, and the
/// process's byte budget.
#[derive(Debug, Clone)]
pub struct FhirClient {
    pub http: reqwest::Client,
    pub policy: FetchPolicy,
    pub budget: Arc<ByteBudget>,
}

impl FhirClient {
    pub fn new(policy: FetchPolicy) -> Result<FhirClient, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(policy.budget)
            .user_agent(concat!("popliteal/", env!("CARGO_PKG_VERSION")));
        if policy.public_addresses_only {
            builder = builder.dns_resolver(Arc::new(PublicAddressResolver));
        }
        let budget = ByteBudget::new(policy.max_bytes_in_flight);
        Ok(FhirClient { http: builder.build()?, policy, budget })
    }
}

impl FetchPolicy {
    /// The policy the `fhir` settings ask for: plain http to loopback only in local and test;
    /// public addresses only in production unless origins are listed.
    pub fn from_settings(settings: &FhirSettings, environment: Environment) -> FetchPolicy {
        FetchPolicy {
            budget: Duration::from_millis(settings.fetch_budget_ms.get()),
            page_cap: settings.page_cap.get(),
            max_response_bytes: settings.max_response_bytes.get(),
            allowed_origins: settings.allowed_origins.iter().map(|origin| origin.as_str().to_owned()).collect(),
            allow_loopback_http: matches!(environment, Environment::Local | Environment::Test),
            public_addresses_only: environment == Environment::Production && settings.allowed_origins.is_empty(),
            max_bytes_per_call: settings.max_bytes_per_call.get(),
            max_bytes_in_flight: settings.max_bytes_in_flight.get(),
        }
    }
}

/// A URL's origin, as `https://host:port`.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Whether a URL carries a user name or password (`https://user:pass@host/`): the HTTP client
/// would send them as Basic credentials instead of the EHR's token.
fn carries_credentials(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Whether the service may send a token to this FHIR server, or why not.
pub fn check_server(server: &Url, policy: &FetchPolicy) -> Result<(), Cause> {
    if carries_credentials(server) {
        return Err(Cause::CredentialsInUrl);
    }
    let loopback = matches!(server.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let scheme_ok = server.scheme() == "https" || (server.scheme() == "http" && loopback && policy.allow_loopback_http);
    if !scheme_ok {
        return Err(Cause::OriginNotAllowed);
    }
    if policy.allowed_origins.is_empty() {
        if policy.public_addresses_only && address::literal_is_refused(server) {
            return Err(Cause::AddressNotPublic);
        }
        return Ok(());
    }
    let origin = origin(server);
    if policy.allowed_origins.iter().any(|allowed| allowed.trim_end_matches('/') == origin) {
        Ok(())
    } else {
        Err(Cause::OriginNotAllowed)
    }
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

/// One call's reads from the FHIR server: its origin, its token, its deadline and its bytes.
pub struct Fetcher<'a> {
    pub client: &'a FhirClient,
    pub token: Option<&'a AccessToken>,
    /// The origin of `fhirServer`: every URL read must have it.
    pub origin: String,
    /// When the whole fetch phase of the call must be over.
    pub deadline: Instant,
    /// What the call has read, and holds of the process's byte budget until it is dropped.
    pub bytes: CallBytes,
}

impl<'a> Fetcher<'a> {
    pub fn new(client: &'a FhirClient, token: Option<&'a AccessToken>, server: &Url) -> Fetcher<'a> {
        Fetcher {
            client,
            token,
            origin: origin(server),
            deadline: Instant::now() + client.policy.budget,
            bytes: CallBytes::new(Arc::clone(&client.budget), client.policy.max_bytes_per_call),
        }
    }

    pub fn policy(&self) -> &FetchPolicy {
        &self.client.policy
    }

    /// GETs one URL of the server's origin, within the deadline, the size limit and the call's
    /// bytes.
    pub async fn get(&self, url: &Url) -> Result<Vec<u8>, Cause> {
        if carries_credentials(url) {
            return Err(Cause::CredentialsInUrl);
        }
        if origin(url) != self.origin {
            return Err(Cause::OriginNotAllowed);
        }
        let mut request = self.client.http.get(url.clone()).header("Accept", "application/fhir+json");
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
            .map_err(|error| {
                if address::is_refusal(&error) {
                    tracing::warn!(reason = Cause::AddressNotPublic.as_str(), "fhirServer refused: nothing fetched");
                    Cause::AddressNotPublic
                } else if error.is_timeout() {
                    Cause::Timeout
                } else {
                    Cause::Network
                }
            })?;
        if !response.status().is_success() {
            return Err(Cause::Status(response.status().as_u16()));
        }
        if let Some(length) = response.content_length() {
            if length > self.policy().max_response_bytes as u64 {
                return Err(Cause::TooLarge);
            }
            if self.bytes.would_exceed(length) {
                return Err(Cause::CallByteCap);
            }
        }
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(self.deadline, response.chunk())
                .await
                .map_err(|_| Cause::Timeout)?
                .map_err(|_| Cause::Network)?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > self.policy().max_response_bytes {
                return Err(Cause::TooLarge);
            }
            self.bytes.take(chunk.len(), self.deadline).await?;
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
            public_addresses_only: !loopback,
            max_bytes_per_call: 1 << 22,
            max_bytes_in_flight: 1 << 24,
        }
    }

    fn origin_allowed(server: &Url, policy: &FetchPolicy) -> bool {
        check_server(server, policy).is_ok()
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
    fn production_refuses_a_server_at_a_private_address_unless_its_origin_is_listed() {
        let production = policy(&[], false);
        assert_eq!(check_server(&url("https://127.0.0.1:8443/fhir/"), &production), Err(Cause::AddressNotPublic));
        assert_eq!(check_server(&url("https://169.254.169.254/fhir/"), &production), Err(Cause::AddressNotPublic));
        assert_eq!(check_server(&url("https://[fd00:ec2::254]/fhir/"), &production), Err(Cause::AddressNotPublic));
        assert_eq!(check_server(&url("https://ehr.example.org/fhir/"), &production), Ok(()));
        let listed = policy(&["https://10.0.0.5:8443"], false);
        assert_eq!(check_server(&url("https://10.0.0.5:8443/fhir/"), &listed), Ok(()));
    }

    #[test]
    fn a_server_url_with_a_user_name_or_password_is_refused() {
        let policy = policy(&[], true);
        assert_eq!(
            check_server(&url("https://user:secret@ehr.example.org/fhir/"), &policy),
            Err(Cause::CredentialsInUrl)
        );
        assert_eq!(check_server(&url("https://user@ehr.example.org/fhir/"), &policy), Err(Cause::CredentialsInUrl));
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
