//! Fetching what the prefetch lacks from the EHR's FHIR server.
//!
//! For each prefetch key that is absent or an OperationOutcome, the service's own query template
//! (from `cds-hooks/services.json`) is sent to `fhirServer` with `fhirAuthorization`'s bearer
//! token, concurrently, all within one time budget; search Bundles are followed through their
//! `next` links (same origin only) up to a page cap, and a prefetch Bundle with a `next` link is
//! completed the same way. What cannot be read stays missing: the caller answers 412 for a
//! required key and a `data-unavailable` card otherwise. reqwest with fhir-sdk types (not
//! fhir-sdk's client, which announces `fhirVersion=4.3` to R4 servers): `Accept:
//! application/fhir+json`. The token is sent only to the allowed `fhirServer` origin and is never
//! logged. Each request carries the W3C `traceparent` of its key's span, so the EHR's traces join
//! ours; the spans record the key and the result, never the URL (it names the patient).

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use url::Url;

use super::prefetch;
use super::record::DataKey;
use crate::protocol::request::{AccessToken, HookRequest};
use crate::telemetry::Metrics;

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

/// Why a key could not be fetched (for logs; the card says which, not why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFailure {
    NoServer,
    OriginNotAllowed,
    Status(u16),
    Timeout,
    Network,
    NotFhir,
    TooLarge,
}

impl FetchFailure {
    /// For metrics and spans: a closed set of codes.
    pub fn as_str(self) -> &'static str {
        match self {
            FetchFailure::NoServer => "no-server",
            FetchFailure::OriginNotAllowed => "origin-not-allowed",
            FetchFailure::Status(400..=499) => "status-4xx",
            FetchFailure::Status(500..=599) => "status-5xx",
            FetchFailure::Status(_) => "status-other",
            FetchFailure::Timeout => "timeout",
            FetchFailure::Network => "network",
            FetchFailure::NotFhir => "not-fhir",
            FetchFailure::TooLarge => "too-large",
        }
    }
}

/// Where each key's data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSource {
    Prefetch,
    Fetched,
    Unavailable,
}

impl DataSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DataSource::Prefetch => "prefetch",
            DataSource::Fetched => "fetched",
            DataSource::Unavailable => "unavailable",
        }
    }
}

/// What the fetch phase did.
#[derive(Debug, Default)]
pub struct FetchReport {
    pub sources: Vec<(DataKey, DataSource)>,
    pub failures: Vec<(DataKey, FetchFailure)>,
}

impl FetchReport {
    pub fn fetched(&self) -> Vec<&'static str> {
        self.fetched_keys().into_iter().map(DataKey::prefetch_key).collect()
    }

    pub fn fetched_keys(&self) -> Vec<DataKey> {
        self.sources.iter().filter(|(_, s)| *s == DataSource::Fetched).map(|(k, _)| *k).collect()
    }
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(default, borrow)]
    entry: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    link: Option<Vec<Link>>,
}

#[derive(Deserialize)]
struct Link {
    relation: Option<String>,
    url: Option<String>,
}

/// What a key needs.
enum Need {
    /// Absent or failed: run the query template.
    Query,
    /// A prefetch Bundle with more pages: follow its `next` link.
    MorePages { entries: Vec<Box<RawValue>>, next: String },
}

/// Whether a Bundle may have a `next` link: `"next"` is in its text, or an escape could spell
/// it. A search, not a parse: most prefetch Bundles have one page, and reading each twice was
/// an eighth of a hook call's time.
fn may_have_next_link(raw: &RawValue) -> bool {
    let text = raw.get().as_bytes();
    memchr::memmem::find(text, b"\"next\"").is_some() || memchr::memmem::find(text, b"\\u").is_some()
}

fn need(raw: Option<&RawValue>) -> Option<Need> {
    let Some(raw) = raw else {
        return Some(Need::Query);
    };
    match prefetch::resource_type_of(raw).as_deref() {
        Some("OperationOutcome") => Some(Need::Query),
        Some("Bundle") if may_have_next_link(raw) => {
            let page = serde_json::from_str::<Page<'_>>(raw.get()).ok()?;
            let next = next_link(&page)?;
            let entries = page.entry.unwrap_or_default().into_iter().map(|e| e.to_owned()).collect();
            Some(Need::MorePages { entries, next })
        }
        _ => None,
    }
}

fn next_link(page: &Page<'_>) -> Option<String> {
    page.link.as_ref()?.iter().find(|l| l.relation.as_deref() == Some("next")).and_then(|l| l.url.clone())
}

fn origin(url: &Url) -> String {
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
fn fill_template(template: &str, request: &HookRequest) -> String {
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

struct Fetcher<'a> {
    client: &'a reqwest::Client,
    token: Option<&'a AccessToken>,
    origin: String,
    policy: &'a FetchPolicy,
    deadline: Instant,
}

impl Fetcher<'_> {
    async fn get(&self, url: &Url) -> Result<Vec<u8>, FetchFailure> {
        if origin(url) != self.origin {
            return Err(FetchFailure::OriginNotAllowed);
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
            .map_err(|_| FetchFailure::Timeout)?
            .map_err(|e| if e.is_timeout() { FetchFailure::Timeout } else { FetchFailure::Network })?;
        if !response.status().is_success() {
            return Err(FetchFailure::Status(response.status().as_u16()));
        }
        if response.content_length().is_some_and(|length| length > self.policy.max_response_bytes as u64) {
            return Err(FetchFailure::TooLarge);
        }
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(self.deadline, response.chunk())
                .await
                .map_err(|_| FetchFailure::Timeout)?
                .map_err(|_| FetchFailure::Network)?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > self.policy.max_response_bytes {
                return Err(FetchFailure::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Reads a search Bundle and its next pages (up to the cap); returns the merged Bundle and
    /// whether pages were left unread.
    async fn search(
        &self,
        first: Url,
        mut entries: Vec<Box<RawValue>>,
        pages_read: usize,
    ) -> Result<(Box<RawValue>, bool), FetchFailure> {
        let mut next = Some(first);
        let mut pages = pages_read;
        while let Some(url) = next.take() {
            if pages >= self.policy.page_cap {
                return Ok((merged(&entries)?, true));
            }
            let body = self.get(&url).await?;
            let page: Page<'_> = serde_json::from_slice(&body).map_err(|_| FetchFailure::NotFhir)?;
            match page.resource_type.as_deref() {
                Some("Bundle") => {}
                _ => return Err(FetchFailure::NotFhir),
            }
            entries.extend(page.entry.iter().flatten().map(|e| (*e).to_owned()));
            pages += 1;
            next = next_link(&page).and_then(|link| url.join(&link).ok());
        }
        Ok((merged(&entries)?, false))
    }

    async fn read(&self, url: Url) -> Result<Box<RawValue>, FetchFailure> {
        let body = self.get(&url).await?;
        let text = String::from_utf8(body).map_err(|_| FetchFailure::NotFhir)?;
        let raw = RawValue::from_string(text).map_err(|_| FetchFailure::NotFhir)?;
        match prefetch::resource_type_of(&raw).as_deref() {
            Some("OperationOutcome") | None => Err(FetchFailure::NotFhir),
            Some(_) => Ok(raw),
        }
    }
}

fn merged(entries: &[Box<RawValue>]) -> Result<Box<RawValue>, FetchFailure> {
    let mut text = String::from(r#"{"resourceType":"Bundle","type":"searchset","entry":["#);
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(entry.get());
    }
    text.push_str("]}");
    RawValue::from_string(text).map_err(|_| FetchFailure::NotFhir)
}

/// Completes `request.prefetch` from the FHIR server where it can, within the budget.
/// `templates` are the service's prefetch query templates, by key.
#[tracing::instrument(name = "complete prefetch", skip_all)]
pub async fn complete_prefetch(
    request: &mut HookRequest,
    templates: &HashMap<String, String>,
    client: &reqwest::Client,
    policy: &FetchPolicy,
    metrics: &Metrics,
) -> (FetchReport, Vec<DataKey>) {
    let mut report = FetchReport::default();
    let mut unfinished_pages = Vec::new();
    let needs: Vec<(DataKey, Need)> = DataKey::ALL
        .iter()
        .filter_map(|key| need(request.prefetch.get(key.prefetch_key()).map(|v| &**v)).map(|n| (*key, n)))
        .collect();
    for key in DataKey::ALL {
        if !needs.iter().any(|(k, _)| k == key) {
            report.sources.push((*key, DataSource::Prefetch));
        }
    }
    if needs.is_empty() {
        return (report, unfinished_pages);
    }
    let server = request.fhir_server.as_deref().and_then(|s| Url::parse(&format!("{}/", s.trim_end_matches('/'))).ok());
    let failure = match &server {
        None => Some(FetchFailure::NoServer),
        Some(url) if !origin_allowed(url, policy) => Some(FetchFailure::OriginNotAllowed),
        Some(_) => None,
    };
    let (Some(server), None) = (server, failure) else {
        let failure = failure.unwrap_or(FetchFailure::NoServer);
        for (key, need) in needs {
            match need {
                // The prefetch's own first page is still there: keep it, say the rest is unread.
                Need::MorePages { .. } => {
                    report.sources.push((key, DataSource::Prefetch));
                    unfinished_pages.push(key);
                }
                Need::Query => report.sources.push((key, DataSource::Unavailable)),
            }
            report.failures.push((key, failure));
            metrics.fhir_fetch_failure(key.prefetch_key(), failure.as_str());
        }
        if failure == FetchFailure::OriginNotAllowed {
            tracing::warn!(hook_instance = %request.hook_instance, "fhirServer is not an allowed origin: nothing fetched");
        }
        return (report, unfinished_pages);
    };
    let fetcher = Fetcher {
        client,
        token: request.fhir_authorization.as_ref().map(|a| &a.access_token),
        origin: origin(&server),
        policy,
        deadline: Instant::now() + policy.budget,
    };
    let server = &server;
    let tasks = needs.into_iter().map(|(key, need)| {
        let fetcher = &fetcher;
        let url = templates.get(key.prefetch_key()).and_then(|t| server.join(&fill_template(t, request)).ok());
        let span =
            tracing::info_span!("fetch FHIR data", fhir.key = key.prefetch_key(), fhir.result = tracing::field::Empty);
        async move {
            let started = std::time::Instant::now();
            let result = match (need, url) {
                (Need::MorePages { entries, next }, _) => match Url::parse(&next).or_else(|_| server.join(&next)) {
                    Ok(next) => fetcher.search(next, entries, 1).await,
                    Err(_) => Err(FetchFailure::NotFhir),
                },
                (Need::Query, None) => Err(FetchFailure::NotFhir),
                (Need::Query, Some(url)) if key == DataKey::Patient => fetcher.read(url).await.map(|raw| (raw, false)),
                (Need::Query, Some(url)) => fetcher.search(url, Vec::new(), 0).await,
            };
            let outcome = result.as_ref().map_or_else(|failure| failure.as_str(), |_| "ok");
            tracing::Span::current().record("fhir.result", outcome);
            metrics.fhir_fetch(key.prefetch_key(), outcome, started.elapsed());
            (key, result)
        }
        .instrument(span)
    });
    for (key, result) in futures_util::future::join_all(tasks).await {
        match result {
            Ok((raw, more)) => {
                request.prefetch.insert(key.prefetch_key().to_owned(), raw);
                report.sources.push((key, DataSource::Fetched));
                if more {
                    unfinished_pages.push(key);
                }
            }
            Err(failure) => {
                let had_first_page = request
                    .prefetch
                    .get(key.prefetch_key())
                    .is_some_and(|raw| prefetch::resource_type_of(raw).as_deref() == Some("Bundle"));
                report.sources.push((key, if had_first_page { DataSource::Prefetch } else { DataSource::Unavailable }));
                if had_first_page {
                    unfinished_pages.push(key);
                }
                report.failures.push((key, failure));
                metrics.fhir_fetch_failure(key.prefetch_key(), failure.as_str());
            }
        }
    }
    tracing::info!(
        hook_instance = %request.hook_instance,
        fetched = ?report.fetched(),
        failures = ?report.failures.iter().map(|(k, f)| (k.prefetch_key(), *f)).collect::<Vec<_>>(),
        "prefetch completed from the FHIR server"
    );
    (report, unfinished_pages)
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

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    #[test]
    fn a_bundle_is_followed_only_when_it_links_to_a_next_page_however_the_link_is_spelled() {
        let one_page = raw(r#"{"resourceType":"Bundle","link":[{"relation":"self","url":"https://x/a"}],"entry":[]}"#);
        assert!(need(Some(&one_page)).is_none());
        let next = raw(r#"{"resourceType":"Bundle","link":[{"relation":"next","url":"https://x/b"}],"entry":[]}"#);
        assert!(matches!(need(Some(&next)), Some(Need::MorePages { next, .. }) if next == "https://x/b"));
        let escaped = raw(r#"{"resourceType":"Bundle","link":[{"relation":"\u006eext","url":"https://x/c"}]}"#);
        assert!(matches!(need(Some(&escaped)), Some(Need::MorePages { next, .. }) if next == "https://x/c"));
        let outcome = raw(r#"{"resourceType":"OperationOutcome","issue":[]}"#);
        assert!(matches!(need(Some(&outcome)), Some(Need::Query)));
        assert!(matches!(need(None), Some(Need::Query)));
        assert!(need(Some(&raw(r#"["Bundle"]"#))).is_none(), "an array is not a Bundle");
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
