//! The audit trail of hook calls: which cards (topic, indicator) and suggestions a call answered,
//! from which data, under which rules version, how fast; the patient only as a keyed hash.
//!
//! Policy: **every answered hook call has its audit record, and the audit never fails nor
//! delays a hook call.** The handler hands the record to the spool's appender without waiting;
//! the appender writes it to a local append-only file at once and syncs it to disk at least
//! every 100 ms (`spool`); a drainer task writes the spool to the database in large batches, in
//! order, retrying for as long as the database is away, and moves its cursor only past what is
//! committed. A `kill -9` loses nothing the appender has written (a power cut: at most the last
//! 100 ms); a restart writes what the spool still holds; a database outage only grows the spool
//! (`GET /ready` and the `popliteal.audit.backlog` metrics show it). The one loss is a spool
//! that cannot be written (a full or failing disk): counted, and logged at most once a second.
//! Feedback is the opposite: it is durable in the database before the EHR gets its 200 (see
//! `routes::feedback`).

pub mod spool;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::catalogue::ServiceKind;
use crate::configuration::AuditSettings;
use crate::evaluate::Outcome;
use crate::log_throttle::LogThrottle;
use crate::protocol::request::HookRequest;
use crate::store::{Store, StoreError};
use spool::{Appender, Drainer, SYNC_INTERVAL, Spool, SpoolCounts, SpoolError};

/// The version of the rules that answered: the crate's version.
pub const RULES_VERSION: &str = env!("CARGO_PKG_VERSION");

/// One hook call, as stored (and as spooled, in JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Ours: a hookInstance may come more than once (an EHR retrying).
    pub invocation_id: Uuid,
    pub hook_instance: String,
    pub service_id: String,
    pub hook: String,
    #[serde(with = "time::serde::rfc3339")]
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

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// What happened to audit records since start, and what waits in the spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditCounts {
    /// Written to the database by this process.
    pub written: u64,
    /// In the spool, not yet in the database (earlier runs' records included).
    pub backlog_records: u64,
    /// Their bytes on disk.
    pub backlog_bytes: u64,
    /// Not written to the spool (a full or failing disk): lost.
    pub lost: u64,
    /// Refused by the database as they are (not for a passing failure), kept aside in the
    /// spool folder's `rejected.spool` for an operator.
    pub rejected: u64,
}

/// The counts, kept here for `GET /ready` and exported as metrics.
struct Metrics {
    written: AtomicU64,
    rejected: AtomicU64,
    spool: Arc<SpoolCounts>,
    exported: crate::telemetry::Metrics,
    loss_log: LogThrottle,
}

impl Metrics {
    fn written(&self, count: u64) {
        self.written.fetch_add(count, Ordering::Relaxed);
        self.exported.audit_records("written", count);
    }

    fn lost(&self, count: u64, reason: &str) {
        let lost = self.spool.lost.fetch_add(count, Ordering::Relaxed) + count;
        self.exported.audit_records("lost", count);
        if self.loss_log.due() {
            tracing::error!(
                lost_since_start = lost,
                error.detail = reason,
                "audit records lost: the spool cannot be written"
            );
        }
    }
}

enum Message {
    Record(Box<AuditRecord>),
    /// Sync the spool, then answer.
    Flush(oneshot::Sender<()>),
}

/// The handlers' side: hash, and hand the record to the spool without waiting.
#[derive(Clone)]
pub struct Auditor {
    sender: std::sync::mpsc::Sender<Message>,
    hasher: Arc<PatientHasher>,
    metrics: Arc<Metrics>,
}

/// The spool's appender thread and drainer task, to be finished when the server stops.
pub struct AuditWriter {
    auditor: Auditor,
    drainer: JoinHandle<()>,
    stop: watch::Sender<bool>,
    /// Holds the spool folder's lock (and a test's temporary folder) for the process's life.
    _spool: Spool,
    _temporary: Option<tempfile::TempDir>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("audit.spool_dir: cannot make a temporary folder: {0}")]
    Temporary(std::io::Error),
    #[error("audit: cannot start the spool's appender thread: {0}")]
    Thread(std::io::Error),
}

/// The most records written to the database in one transaction.
const BATCH: usize = 1000;
/// The longest wait between two attempts at a batch while the database is away.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

impl Auditor {
    /// Opens the spool (`audit.spool_dir`; unset, a temporary folder: the settings allow that in
    /// the test environment only), starts the appender thread and the drainer task on the
    /// current runtime.
    pub fn start(store: Store, settings: &AuditSettings) -> Result<(Auditor, AuditWriter), AuditError> {
        let (directory, temporary) = match &settings.spool_dir {
            Some(directory) => (directory.clone(), None),
            None => {
                let temporary =
                    tempfile::Builder::new().prefix("popliteal-spool-").tempdir().map_err(AuditError::Temporary)?;
                (temporary.path().to_path_buf(), Some(temporary))
            }
        };
        let spool = Spool::open(&directory)?;
        let (appender, drainer) = spool.start()?;
        let metrics = Arc::new(Metrics {
            written: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            spool: Arc::clone(&spool.counts),
            exported: crate::telemetry::Metrics::default(),
            loss_log: LogThrottle::new(),
        });
        metrics.exported.audit_backlog(Arc::clone(&spool.counts));
        let (sender, receiver) = std::sync::mpsc::channel();
        let appending = Arc::clone(&metrics);
        std::thread::Builder::new()
            .name("audit-spool".into())
            .spawn(move || append_loop(&receiver, appender, &appending))
            .map_err(AuditError::Thread)?;
        let (stop, stopped) = watch::channel(false);
        let timeout = Duration::from_millis(settings.write_timeout_ms.get());
        let rejected_file = directory.join("rejected.spool");
        let drainer = tokio::spawn(drain_loop(drainer, store, stopped, Arc::clone(&metrics), timeout, rejected_file));
        let auditor =
            Auditor { sender, hasher: Arc::new(PatientHasher::new(settings.patient_hash_key.clone())), metrics };
        let writer = AuditWriter { auditor: auditor.clone(), drainer, stop, _spool: spool, _temporary: temporary };
        Ok((auditor, writer))
    }

    pub fn patient_hash(&self, patient_id: &str) -> String {
        self.hasher.hash(patient_id)
    }

    /// Hands a record to the spool; never waits.
    pub fn submit(&self, record: AuditRecord) {
        if self.sender.send(Message::Record(Box::new(record))).is_err() {
            self.metrics.lost(1, "the spool's appender has stopped");
        }
    }

    /// Waits until everything submitted so far is synced to the spool on disk.
    pub async fn flush(&self) {
        let (done, synced) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).is_ok() {
            let _ = synced.await;
        }
    }

    pub fn counts(&self) -> AuditCounts {
        let spool = &self.metrics.spool;
        AuditCounts {
            written: self.metrics.written.load(Ordering::Relaxed),
            backlog_records: spool.backlog_records.load(Ordering::Relaxed),
            backlog_bytes: spool.backlog_bytes.load(Ordering::Relaxed),
            lost: spool.lost.load(Ordering::Relaxed),
            rejected: self.metrics.rejected.load(Ordering::Relaxed),
        }
    }
}

impl AuditWriter {
    /// Syncs the spool, then gives the drainer until `within` to write what it holds; what is
    /// left stays in the spool for the next start.
    pub async fn finish(self, within: Duration) {
        self.auditor.flush().await;
        let _ = self.stop.send(true);
        let mut drainer = self.drainer;
        if tokio::time::timeout(within, &mut drainer).await.is_err() {
            drainer.abort();
            let left = self.auditor.counts().backlog_records;
            tracing::warn!(records = left, "audit records left in the spool at shutdown: written at the next start");
        }
    }
}

/// The appender thread: writes records to the spool as they come, syncs at least every
/// `SYNC_INTERVAL` while anything is unsynced, and answers flushes.
fn append_loop(receiver: &std::sync::mpsc::Receiver<Message>, mut appender: Appender, metrics: &Metrics) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut encoded = Vec::new();
    let mut last_sync = Instant::now();
    let mut flushes = Vec::new();
    loop {
        let first = match receiver.recv_timeout(SYNC_INTERVAL) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let _ = appender.sync();
                return;
            }
        };
        let mut count = 0;
        let mut next = first;
        while let Some(message) = next {
            match message {
                Message::Record(record) => {
                    spool::encode(&record, &mut encoded);
                    count += 1;
                }
                Message::Flush(done) => flushes.push(done),
            }
            next = if encoded.len() < (1 << 20) { receiver.try_recv().ok() } else { None };
        }
        if count > 0
            && let Err(error) = appender.append(&encoded, count)
        {
            metrics.lost(count, &error.to_string());
        }
        encoded.clear();
        if !flushes.is_empty() || last_sync.elapsed() >= SYNC_INTERVAL {
            if let Err(error) = appender.sync()
                && metrics.loss_log.due()
            {
                tracing::error!(error.detail = %error, "the audit spool cannot be synced to disk");
            }
            last_sync = Instant::now();
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

/// The drainer: writes the spool to the database, batch after batch, in order; retries a batch
/// for as long as the database is away; stops when told to, once the spool is drained.
async fn drain_loop(
    mut drainer: Drainer,
    store: Store,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    timeout: Duration,
    rejected_file: std::path::PathBuf,
) {
    let failure_log = LogThrottle::new();
    loop {
        let (returned, batch) = drainer.read_next_blocking(BATCH).await;
        drainer = returned;
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                if failure_log.due() {
                    tracing::error!(error.detail = %error, "the audit spool cannot be read");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.records.is_empty() {
            if batch.next != drainer.cursor() {
                commit(&mut drainer, &batch, &failure_log);
                continue;
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                () = drainer.wait_for_more(Duration::from_millis(500)) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        write_batch(&store, &batch, &metrics, timeout, &failure_log, &rejected_file).await;
        commit(&mut drainer, &batch, &failure_log);
    }
}

fn commit(drainer: &mut Drainer, batch: &spool::Batch, failure_log: &LogThrottle) {
    if let Err(error) = drainer.commit(batch)
        && failure_log.due()
    {
        tracing::error!(error.detail = %error, "the audit spool's cursor cannot be saved (records may be written twice, stored once)");
    }
}

/// Stores `records` in one transaction, retrying with a growing delay for as long as the
/// database is unavailable or slow (logged through `failure_log`). `Err`: the database refused
/// them as they are (not for a passing failure), with its detail.
async fn store_while_available(
    store: &Store,
    records: &[AuditRecord],
    metrics: &Metrics,
    timeout: Duration,
    failure_log: &LogThrottle,
) -> Result<(), String> {
    let mut delay = Duration::from_millis(100);
    loop {
        match tokio::time::timeout(timeout, store.record_invocations(records)).await {
            Ok(Ok(())) => {
                metrics.written(records.len() as u64);
                return Ok(());
            }
            Ok(Err(StoreError::Failed(detail))) => return Err(detail),
            Ok(Err(error)) => {
                if failure_log.due() {
                    tracing::warn!(error.detail = %error, backlog = metrics.spool.backlog_records.load(Ordering::Relaxed), "the audit store is unavailable: records wait in the spool");
                }
            }
            Err(_) => {
                if failure_log.due() {
                    tracing::warn!(
                        timeout_ms = timeout.as_millis() as u64,
                        "an audit write timed out: records wait in the spool"
                    );
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

/// Writes one batch. A batch the database refuses for good is written record by record, and a
/// record refused on its own is set aside (`rejected.spool`), so one bad record cannot stop the
/// trail.
async fn write_batch(
    store: &Store,
    batch: &spool::Batch,
    metrics: &Metrics,
    timeout: Duration,
    failure_log: &LogThrottle,
    rejected_file: &std::path::Path,
) {
    let Err(detail) = store_while_available(store, &batch.records, metrics, timeout, failure_log).await else {
        return;
    };
    if failure_log.due() {
        tracing::error!(error.detail = detail.as_str(), "an audit batch was refused: writing it record by record");
    }
    for record in &batch.records {
        let alone = std::slice::from_ref(record);
        if store_while_available(store, alone, metrics, timeout, failure_log).await.is_ok() {
            continue;
        }
        let mut encoded = Vec::new();
        spool::encode(record, &mut encoded);
        let kept = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(rejected_file)
            .and_then(|mut file| std::io::Write::write_all(&mut file, &encoded));
        metrics.rejected.fetch_add(1, Ordering::Relaxed);
        metrics.exported.audit_records("rejected", 1);
        tracing::error!(
            service_id = record.service_id.as_str(),
            kept_aside = kept.is_ok(),
            "an audit record was refused by the database and set aside"
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
