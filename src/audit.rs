//! The audit trail of hook calls: which cards (topic, indicator) and suggestions a call answered,
//! from which data, under which rules version, how fast; the patient only as a keyed hash.
//!
//! Policy: **a failed or slow audit write never fails, nor delays, a hook call.** The answer is
//! for a clinician looking at a patient now; the audit record is for later review. The handler
//! hands the record to a bounded queue without waiting (`try_send`) and a single writer task
//! stores it, with a timeout and a few retries. A record that cannot be queued (the queue is
//! full because the database is slow or down) or written is dropped, logged at `error` with
//! its hookInstance, and counted ([`AuditCounts`]). Feedback is the opposite: it is durable
//! before the EHR gets its 200 (see `routes::feedback`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::catalogue::ServiceKind;
use crate::configuration::AuditSettings;
use crate::evaluate::Outcome;
use crate::protocol::request::HookRequest;
use crate::store::{Store, StoreError};

/// The version of the rules that answered: the crate's version.
pub const RULES_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One hook call, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Ours: a hookInstance may come more than once (an EHR retrying).
    pub invocation_id: Uuid,
    pub hook_instance: String,
    pub service_id: String,
    pub hook: String,
    pub invoked_at: OffsetDateTime,
    pub rules_version: String,
    /// Hex HMAC-SHA256 of `context.patientId`.
    pub patient_hash: String,
    /// From the request's arrival to the cards being ready (JSON encoding and network excluded).
    pub latency: Duration,
    /// (prefetch key, provenance: sent | fetched | absent | failed:<cause> | partial:<cause>).
    pub data_sources: Vec<(String, String)>,
    pub cards: Vec<AuditedCard>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditedCard {
    pub uuid: Uuid,
    pub topic: String,
    pub indicator: String,
    pub suggestions: Vec<Uuid>,
}

impl AuditRecord {
    /// The record of an evaluated call. Reads ids, codes and counts only: no patient data.
    pub fn of_call(
        service: ServiceKind,
        request: &HookRequest,
        outcome: &Outcome,
        patient_hash: String,
        invoked_at: OffsetDateTime,
        latency: Duration,
    ) -> AuditRecord {
        AuditRecord {
            invocation_id: Uuid::new_v4(),
            hook_instance: request.hook_instance.clone(),
            service_id: service.id().to_owned(),
            hook: request.hook.clone(),
            invoked_at,
            rules_version: RULES_VERSION.to_owned(),
            patient_hash,
            latency,
            data_sources: outcome
                .provenance
                .iter()
                .map(|(key, provenance)| (key.prefetch_key().to_owned(), provenance.code()))
                .collect(),
            cards: outcome
                .cards
                .iter()
                .map(|card| AuditedCard {
                    uuid: card.uuid,
                    topic: card.source.topic.code.clone(),
                    indicator: card.indicator.as_str().to_owned(),
                    suggestions: card.suggestions.iter().map(|s| s.uuid).collect(),
                })
                .collect(),
        }
    }
}

/// HMAC-SHA256 of a patient id under the configured key: the same patient gives the same hash
/// (so calls can be counted per patient), and without the key the id cannot be recovered by
/// hashing candidate ids.
pub struct PatientHasher {
    key: SecretString,
}

impl PatientHasher {
    pub fn new(key: SecretString) -> PatientHasher {
        PatientHasher { key }
    }

    pub fn hash(&self, patient_id: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.key.expose_secret().as_bytes()).expect("HMAC takes keys of any length");
        mac.update(patient_id.as_bytes());
        mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

/// What happened to audit records since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditCounts {
    pub written: u64,
    /// Queued but not stored (after the retries).
    pub failed: u64,
    /// Not queued: the queue was full or closed.
    pub dropped: u64,
}

/// The counts, kept here for `GET /ready` and exported as the `popliteal.audit.records` metric.
#[derive(Default)]
struct Metrics {
    written: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    exported: crate::telemetry::Metrics,
}

impl Metrics {
    fn written(&self, count: u64) {
        self.written.fetch_add(count, Ordering::Relaxed);
        self.exported.audit_records("written", count);
    }

    /// The failures so far, this one included.
    fn failed(&self, count: u64) -> u64 {
        self.exported.audit_records("failed", count);
        self.failed.fetch_add(count, Ordering::Relaxed) + count
    }

    /// The drops so far, this one included.
    fn dropped(&self) -> u64 {
        self.exported.audit_records("dropped", 1);
        self.dropped.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The handlers' side: hash, and queue without waiting.
#[derive(Clone)]
pub struct Auditor {
    sender: mpsc::Sender<AuditRecord>,
    hasher: Arc<PatientHasher>,
    metrics: Arc<Metrics>,
}

/// The writer task, to be drained when the server stops.
pub struct AuditWriter {
    handle: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

/// Waits before the 2nd and 3rd attempts at a write.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];

impl Auditor {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: Store, settings: &AuditSettings) -> (Auditor, AuditWriter) {
        let (sender, receiver) = mpsc::channel(settings.queue_capacity.get());
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = oneshot::channel();
        let timeout = Duration::from_millis(settings.write_timeout_ms.get());
        let handle = tokio::spawn(write_loop(store, receiver, stopped, metrics.clone(), timeout));
        let auditor =
            Auditor { sender, hasher: Arc::new(PatientHasher::new(settings.patient_hash_key.clone())), metrics };
        (auditor, AuditWriter { handle, stop })
    }

    pub fn patient_hash(&self, patient_id: &str) -> String {
        self.hasher.hash(patient_id)
    }

    /// Queues a record; never waits. A full queue drops the record (logged and counted).
    pub fn submit(&self, record: AuditRecord) {
        if let Err(error) = self.sender.try_send(record) {
            let dropped = self.metrics.dropped();
            let (reason, record) = match error {
                mpsc::error::TrySendError::Full(record) => ("the audit queue is full", record),
                mpsc::error::TrySendError::Closed(record) => ("the audit writer has stopped", record),
            };
            tracing::error!(
                hook_instance = record.hook_instance.as_str(),
                service_id = record.service_id.as_str(),
                dropped,
                "audit record dropped: {reason}"
            );
        }
    }

    pub fn counts(&self) -> AuditCounts {
        AuditCounts {
            written: self.metrics.written.load(Ordering::Relaxed),
            failed: self.metrics.failed.load(Ordering::Relaxed),
            dropped: self.metrics.dropped.load(Ordering::Relaxed),
        }
    }
}

impl AuditWriter {
    /// Stops taking records, writes those queued, and returns within `within` at the latest.
    pub async fn finish(self, within: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(within, self.handle).await.is_err() {
            tracing::error!("audit records still queued at shutdown were not written");
        }
    }
}

async fn write_loop(
    store: Store,
    mut receiver: mpsc::Receiver<AuditRecord>,
    mut stop: oneshot::Receiver<()>,
    metrics: Arc<Metrics>,
    timeout: Duration,
) {
    loop {
        tokio::select! {
            biased;
            record = receiver.recv() => match record {
                Some(record) => {
                    let batch = with_queued(record, &mut receiver);
                    write(&store, &batch, &metrics, timeout).await;
                }
                None => return,
            },
            _ = &mut stop => break,
        }
    }
    receiver.close();
    while let Some(record) = receiver.recv().await {
        let batch = with_queued(record, &mut receiver);
        write(&store, &batch, &metrics, timeout).await;
    }
}

/// The most records written in one transaction.
const BATCH: usize = 256;

/// `first` and whatever else is already queued, up to a batch.
fn with_queued(first: AuditRecord, receiver: &mut mpsc::Receiver<AuditRecord>) -> Vec<AuditRecord> {
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match receiver.try_recv() {
            Ok(record) => batch.push(record),
            Err(_) => break,
        }
    }
    batch
}

async fn write(store: &Store, records: &[AuditRecord], metrics: &Metrics, timeout: Duration) {
    let mut last_error = String::new();
    let count = records.len() as u64;
    for attempt in 0..=RETRY_DELAYS.len() {
        if attempt > 0 {
            tokio::time::sleep(RETRY_DELAYS[attempt - 1]).await;
        }
        match tokio::time::timeout(timeout, store.record_invocations(records)).await {
            Ok(Ok(())) => {
                metrics.written(count);
                return;
            }
            Ok(Err(StoreError::Unavailable(detail))) => last_error = detail,
            Ok(Err(error)) => {
                last_error = error.to_string();
                break;
            }
            Err(_) => last_error = format!("the write took longer than {} ms", timeout.as_millis()),
        }
    }
    let failed = metrics.failed(count);
    for record in records {
        tracing::error!(
            hook_instance = record.hook_instance.as_str(),
            service_id = record.service_id.as_str(),
            error.detail = last_error.as_str(),
            failed,
            "audit record not written"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patient_hash_is_keyed_hmac_sha256_in_hex() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let hasher = PatientHasher::new(SecretString::from("Jefe"));
        assert_eq!(
            hasher.hash("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let other = PatientHasher::new(SecretString::from("another key"));
        assert_ne!(hasher.hash("p-1"), other.hash("p-1"));
        assert_eq!(hasher.hash("p-1"), hasher.hash("p-1"));
    }
}
