//! Patient record assembly: one stage, after the request was validated against its service.
//!
//! Each prefetch key is read from the prefetch first, straight into views. What the prefetch
//! lacks (a key absent or an OperationOutcome) is read from `fhirServer` with the service's own
//! query template, and a prefetch Bundle with a `next` link is completed from it: all keys
//! concurrently, within one time budget, each page read into views as it arrives, up to the page
//! cap. Pages already read stay when a later one is refused (another origin), slow, too large or
//! over the cap: the key is then `Partial` and the card says so. One [`Provenance`] per key says
//! where its data came from.

use std::collections::HashMap;

use serde_json::value::RawValue;
use tracing::Instrument;
use url::Url;

use super::fetch::{FetchPolicy, Fetcher, FhirClient, check_server, fill_template};
use super::page;
use super::record::{Cause, DataKey, KeyData, PageOutcome, PatientRecord, Provenance};
use crate::protocol::request::HookRequest;
use crate::telemetry::Metrics;

/// What a key still needs from the FHIR server.
#[derive(Debug)]
enum Need {
    /// Everything: the key was not sent, or the EHR's read failed (the cause, when it did).
    Query(Option<Cause>),
    /// The pages after the prefetch's first one.
    NextPage(String),
}

/// A key waiting for the FHIR server, with what was read of it so far.
struct Pending {
    data: KeyData,
    need: Need,
}

impl Pending {
    /// The key's provenance when the server cannot be asked at all (`cause` says why).
    fn unfetched(self, cause: Cause) -> (KeyData, Provenance) {
        let provenance = match self.need {
            Need::NextPage(_) => Provenance::Partial(cause),
            Need::Query(None) if cause == Cause::NoServer => Provenance::Absent,
            Need::Query(Some(sent)) if cause == Cause::NoServer => Provenance::Failed(sent),
            Need::Query(_) => Provenance::Failed(cause),
        };
        (self.data, provenance)
    }
}

/// Reads the prefetch's value of a key, or says what it still needs.
fn read_sent(key: DataKey, raw: Option<&RawValue>) -> Result<(KeyData, Provenance), Pending> {
    let mut data = KeyData::new(key);
    let Some(raw) = raw else {
        return Err(Pending { data, need: Need::Query(None) });
    };
    match data.read_value(raw) {
        PageOutcome::Read { next: None } => Ok((data, Provenance::Sent)),
        PageOutcome::Read { next: Some(next) } => Err(Pending { data, need: Need::NextPage(next) }),
        PageOutcome::Failed(cause) => Err(Pending { data: KeyData::new(key), need: Need::Query(Some(cause)) }),
    }
}

/// The server a call may read from, or why it may not.
fn server_of(request: &HookRequest, policy: &FetchPolicy) -> Result<Url, Cause> {
    let server = request
        .fhir_server
        .as_deref()
        .and_then(|s| Url::parse(&format!("{}/", s.trim_end_matches('/'))).ok())
        .ok_or(Cause::NoServer)?;
    check_server(&server, policy).map(|()| server)
}

/// Reads one page fetched from the server into the key's views. A search answers with a Bundle,
/// a read with the one resource asked for (a Patient whose id is not the patient's is not it).
fn read_fetched(data: &mut KeyData, body: Vec<u8>, patient_id: &str) -> Result<Option<String>, Cause> {
    let text = String::from_utf8(body).map_err(|_| Cause::NotFhir)?;
    let raw = RawValue::from_string(text).map_err(|_| Cause::NotFhir)?;
    let expected = match page::classify(&raw) {
        page::Value::Bundle(_) => data.key.is_search(),
        page::Value::Resource(resource) => {
            !data.key.is_search()
                && page::resource_type_of(resource).as_deref() == Some(data.key.resource_type())
                && page::id_of_resource(resource).as_deref() == Some(patient_id)
        }
        page::Value::Nothing | page::Value::Failed(_) => false,
    };
    if !expected {
        return Err(Cause::NotFhir);
    }
    match data.read_value(&raw) {
        PageOutcome::Read { next } => Ok(next),
        PageOutcome::Failed(_) => Err(Cause::NotFhir),
    }
}

/// Reads what a key needs from the server: its query, or its next pages.
async fn fetch_key(
    fetcher: &Fetcher<'_>,
    server: &Url,
    template: Option<String>,
    mut pending: Pending,
    patient_id: &str,
) -> (KeyData, Provenance) {
    let (first, mut pages_read, complete) = match &pending.need {
        Need::Query(_) => (template.and_then(|t| server.join(&t).ok()), 0, Provenance::Fetched),
        Need::NextPage(next) => (Url::parse(next).or_else(|_| server.join(next)).ok(), 1, Provenance::Sent),
    };
    let Some(mut url) = first else {
        return (pending.data, Provenance::Failed(Cause::NotFhir));
    };
    let stop = |data: KeyData, pages_read: usize, cause: Cause| {
        (data, if pages_read > 0 { Provenance::Partial(cause) } else { Provenance::Failed(cause) })
    };
    loop {
        if pages_read >= fetcher.policy().page_cap {
            return stop(pending.data, pages_read, Cause::PageCap);
        }
        let next = match fetcher.get(&url).await {
            Ok(body) => read_fetched(&mut pending.data, body, patient_id),
            Err(cause) => Err(cause),
        };
        match next {
            Err(cause) => return stop(pending.data, pages_read, cause),
            Ok(None) => return (pending.data, complete),
            Ok(Some(link)) => {
                pages_read += 1;
                match url.join(&link) {
                    Ok(next) => url = next,
                    Err(_) => return stop(pending.data, pages_read, Cause::NotFhir),
                }
            }
        }
    }
}

/// Reads every key the prefetch holds into the record; returns the keys that still need the FHIR
/// server.
fn read_prefetch(prefetch: &HashMap<String, Box<RawValue>>) -> (PatientRecord, Vec<Pending>) {
    let mut record = PatientRecord::default();
    let mut pending = Vec::new();
    for key in DataKey::ALL {
        match read_sent(*key, prefetch.get(key.prefetch_key()).map(|v| &**v)) {
            Ok((data, provenance)) => record.insert(data, provenance),
            Err(waiting) => pending.push(waiting),
        }
    }
    (record, pending)
}

/// The record as the prefetch alone gives it, as when a call has no `fhirServer` (benchmarks,
/// fuzzing and tests that evaluate without HTTP).
pub fn from_prefetch_alone(prefetch: &HashMap<String, Box<RawValue>>) -> PatientRecord {
    let (mut record, pending) = read_prefetch(prefetch);
    for waiting in pending {
        let (data, provenance) = waiting.unfetched(Cause::NoServer);
        record.insert(data, provenance);
    }
    record
}

/// Assembles the patient record: the prefetch first, then the FHIR server for what it lacks.
/// `templates` are the service's prefetch query templates, by key.
#[tracing::instrument(name = "assemble record", skip_all)]
pub async fn assemble(
    request: &HookRequest,
    templates: &HashMap<String, String>,
    client: &FhirClient,
    metrics: &Metrics,
) -> PatientRecord {
    let (mut record, pending) = read_prefetch(&request.prefetch);
    if pending.is_empty() {
        return record;
    }
    let server = match server_of(request, &client.policy) {
        Ok(server) => server,
        Err(cause) => {
            if cause != Cause::NoServer {
                tracing::warn!(hook_instance = %request.hook_instance, reason = cause.as_str(), "fhirServer refused: nothing fetched");
            }
            for waiting in pending {
                metrics.fhir_fetch_failure(waiting.data.key.prefetch_key(), cause.as_str());
                let (data, provenance) = waiting.unfetched(cause);
                record.insert(data, provenance);
            }
            return record;
        }
    };
    // Holds the call's share of the process's byte budget until the record is assembled.
    let fetcher = Fetcher::new(client, request.fhir_authorization.as_ref().map(|a| &a.access_token), &server);
    let patient_id = request.context.patient_id.as_str();
    let tasks = pending.into_iter().map(|waiting| {
        let key = waiting.data.key;
        let template = templates.get(key.prefetch_key()).map(|t| fill_template(t, request));
        let span =
            tracing::info_span!("fetch FHIR data", fhir.key = key.prefetch_key(), fhir.result = tracing::field::Empty);
        let (fetcher, server) = (&fetcher, &server);
        async move {
            let started = std::time::Instant::now();
            let (data, provenance) = fetch_key(fetcher, server, template, waiting, patient_id).await;
            let result = match provenance {
                Provenance::Failed(cause) | Provenance::Partial(cause) => {
                    metrics.fhir_fetch_failure(key.prefetch_key(), cause.as_str());
                    cause.as_str()
                }
                _ => "ok",
            };
            tracing::Span::current().record("fhir.result", result);
            metrics.fhir_fetch(key.prefetch_key(), result, started.elapsed());
            (data, provenance)
        }
        .instrument(span)
    });
    for (data, provenance) in futures_util::future::join_all(tasks).await {
        record.insert(data, provenance);
    }
    tracing::info!(
        hook_instance = %request.hook_instance,
        provenance = ?record.provenance.iter().map(|(key, p)| (key.prefetch_key(), p.code())).collect::<Vec<_>>(),
        "record assembled with the FHIR server"
    );
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    #[test]
    fn a_sent_key_is_read_and_what_it_lacks_is_said() {
        let bundle = raw(r#"{"resourceType":"Bundle","entry":[]}"#);
        assert!(matches!(read_sent(DataKey::Conditions, Some(&bundle)), Ok((_, Provenance::Sent))));
        assert!(matches!(read_sent(DataKey::Conditions, None), Err(Pending { need: Need::Query(None), .. })));
        let outcome = raw(r#"{"resourceType":"OperationOutcome","issue":[]}"#);
        assert!(matches!(
            read_sent(DataKey::Conditions, Some(&outcome)),
            Err(Pending { need: Need::Query(Some(Cause::OperationOutcome)), .. })
        ));
        let paged = raw(r#"{"resourceType":"Bundle","link":[{"relation":"next","url":"https://x/2"}],"entry":[]}"#);
        assert!(matches!(read_sent(DataKey::Conditions, Some(&paged)), Err(Pending { need: Need::NextPage(_), .. })));
    }

    #[test]
    fn without_a_server_an_unsent_key_is_absent_a_failed_one_failed_and_a_paged_one_partial() {
        let pending = |need| Pending { data: KeyData::new(DataKey::Conditions), need };
        assert_eq!(pending(Need::Query(None)).unfetched(Cause::NoServer).1, Provenance::Absent);
        assert_eq!(
            pending(Need::Query(Some(Cause::OperationOutcome))).unfetched(Cause::NoServer).1,
            Provenance::Failed(Cause::OperationOutcome)
        );
        assert_eq!(
            pending(Need::Query(None)).unfetched(Cause::OriginNotAllowed).1,
            Provenance::Failed(Cause::OriginNotAllowed)
        );
        assert_eq!(
            pending(Need::NextPage("https://x/2".into())).unfetched(Cause::NoServer).1,
            Provenance::Partial(Cause::NoServer)
        );
    }

    #[test]
    fn a_fetched_read_must_be_the_patient_asked_for_and_a_search_a_bundle() {
        let mut patient = KeyData::new(DataKey::Patient);
        assert_eq!(
            read_fetched(&mut patient, br#"{"resourceType":"Patient","id":"p2"}"#.to_vec(), "p1"),
            Err(Cause::NotFhir)
        );
        assert_eq!(read_fetched(&mut patient, br#"{"resourceType":"Patient","id":"p1"}"#.to_vec(), "p1"), Ok(None));
        let mut conditions = KeyData::new(DataKey::Conditions);
        let single = br#"{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p1"}}"#.to_vec();
        assert_eq!(read_fetched(&mut conditions, single, "p1"), Err(Cause::NotFhir));
        assert_eq!(read_fetched(&mut conditions, b"<html>".to_vec(), "p1"), Err(Cause::NotFhir));
    }
}
