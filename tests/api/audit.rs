//! The audit trail of hook calls: what is recorded, what never is, that it never holds up an
//! answer, and retention. The tests that touch a database run against SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use popliteal::audit::{AuditRecord, AuditedCard, PatientHasher, RULES_VERSION};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;

use crate::on_both_backends;
use crate::support::{
    Backend, TestDatabase, audited, eventually, feedback_item, spawn_app_keeping_auditor, spawn_app_on, test_settings,
    vignette_request,
};

const SERVICE: &str = "/cds-services/posterior-knee-pain";
const SERVICE_ID: &str = "posterior-knee-pain";

fn test_key() -> SecretString {
    test_settings(|_| {}).audit.patient_hash_key
}

async fn each_hook_call_is_audited_with_its_cards_suggestions_sources_and_latency(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let app = spawn_app_on(&database, |_| {}).await;
    let mut request = vignette_request("dvt-likely-with-cancer-on-record");
    request["prefetch"].as_object_mut().expect("prefetch").remove("procedures");
    let response = app.post_json(SERVICE, &request).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");

    let hook_instance = request["hookInstance"].as_str().expect("hookInstance");
    let records = audited(&database.store(), hook_instance).await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.service_id, SERVICE_ID);
    assert_eq!(record.hook, "patient-view");
    assert_eq!(record.rules_version, RULES_VERSION);
    assert!((OffsetDateTime::now_utc() - record.invoked_at).abs() < time::Duration::minutes(1));
    assert!(record.latency > Duration::ZERO && record.latency < Duration::from_secs(10), "{:?}", record.latency);

    let patient = request["context"]["patientId"].as_str().expect("patientId");
    assert_eq!(record.patient_hash, PatientHasher::new(test_key()).hash(patient), "HMAC-SHA256 under the key");
    assert_eq!(record.patient_hash.len(), 64);

    let cards = body["cards"].as_array().expect("cards");
    assert_eq!(record.cards.len(), cards.len());
    for (stored, card) in record.cards.iter().zip(cards) {
        assert_eq!(stored.uuid.to_string(), card["uuid"].as_str().expect("uuid"));
        assert_eq!(stored.topic, card["source"]["topic"]["code"].as_str().expect("topic"));
        assert_eq!(stored.indicator, card["indicator"].as_str().expect("indicator"));
        let mut suggestions: Vec<String> = card["suggestions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["uuid"].as_str().expect("uuid").to_owned())
            .collect();
        suggestions.sort();
        assert_eq!(stored.suggestions.iter().map(ToString::to_string).collect::<Vec<_>>(), suggestions);
    }
    assert!(record.cards.iter().any(|c| !c.suggestions.is_empty()), "a DVT card suggests orders");

    let sources: std::collections::BTreeMap<&str, &str> =
        record.data_sources.iter().map(|(key, origin)| (key.as_str(), origin.as_str())).collect();
    assert_eq!(sources.len(), 7, "{sources:?}");
    assert_eq!(sources["procedures"], "absent");
    assert_eq!(sources["patient"], "sent");
    assert_eq!(sources["conditions"], "sent");
}

/// The stored bytes (SQLite file and WAL) never hold the patient id, names, birth date or
/// answers; PostgreSQL holds the same rows (the same statements write them).
#[tokio::test]
async fn no_patient_data_reaches_the_audit_store() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let app = spawn_app_on(&database, |_| {}).await;
    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let response = app.post_json(SERVICE, &request).await;
    assert_eq!(response.status().as_u16(), 200);
    audited(&database.store(), request["hookInstance"].as_str().expect("hookInstance")).await;

    let patient = &request["prefetch"]["patient"];
    let mut secrets = vec![request["context"]["patientId"].as_str().expect("patientId").to_owned()];
    for name in patient["name"].as_array().into_iter().flatten() {
        secrets.extend(name["family"].as_str().map(str::to_owned));
        secrets.extend(name["given"].as_array().into_iter().flatten().filter_map(|g| g.as_str().map(str::to_owned)));
    }
    secrets.extend(patient["birthDate"].as_str().map(str::to_owned));
    secrets.extend(request["context"]["userId"].as_str().map(str::to_owned));
    assert!(secrets.len() >= 3, "the vignette names its patient: {secrets:?}");

    let path = database.path.clone().expect("a SQLite file");
    let mut stored = Vec::new();
    for suffix in ["", "-wal"] {
        let file = format!("{}{suffix}", path.display());
        stored.extend(std::fs::read(&file).unwrap_or_default());
    }
    assert!(!stored.is_empty());
    let text = String::from_utf8_lossy(&stored);
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        assert!(!text.contains(secret.as_str()), "the store holds {secret:?}");
    }
}

#[tokio::test]
async fn a_hook_call_is_answered_at_once_while_the_audit_store_is_locked_and_audited_after() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let settings = test_settings(|s| {
        s.database.url = SecretString::from(database.url.clone());
        s.database.timeout_ms = std::num::NonZeroU64::new(1000).expect("positive");
        s.audit.write_timeout_ms = std::num::NonZeroU64::new(5000).expect("positive");
    });
    let (app, auditor) = spawn_app_keeping_auditor(settings).await;
    database.store().ping().await.expect("the schema is in place");
    let mut lock = crate::durability::SqliteLock::take(&database).await;

    let request = vignette_request("dvt-likely-with-cancer-on-record");
    let started = Instant::now();
    let response = app.post_json(SERVICE, &request).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status().as_u16(), 200);
    assert!(!response.json::<serde_json::Value>().await.expect("JSON")["cards"].as_array().expect("cards").is_empty());
    assert!(elapsed < Duration::from_millis(800), "the answer waited for the audit store: {elapsed:?}");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    lock.release().await;
    audited(&database.store(), request["hookInstance"].as_str().expect("hookInstance")).await;
    let counts = eventually(Duration::from_secs(5), || async {
        let counts = auditor.counts();
        (counts.backlog_records == 0).then_some(counts)
    })
    .await
    .expect("the spool is drained");
    assert_eq!((counts.written, counts.lost, counts.rejected), (1, 0, 0), "{counts:?}");
}

async fn a_hook_call_is_answered_while_the_audit_store_is_away_and_its_record_waits_in_the_spool_until_it_is_back(
    backend: Backend,
) {
    let database = TestDatabase::missing(backend).await;
    let settings = test_settings(|s| {
        s.database.url = SecretString::from(database.url.clone());
        s.database.timeout_ms = std::num::NonZeroU64::new(300).expect("positive");
        s.audit.write_timeout_ms = std::num::NonZeroU64::new(1000).expect("positive");
    });
    let (app, auditor) = spawn_app_keeping_auditor(settings).await;
    let request = vignette_request("baker-cyst-with-mechanical-symptoms");
    let started = Instant::now();
    let response = app.post_json(SERVICE, &request).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(started.elapsed() < Duration::from_millis(800), "{:?}", started.elapsed());
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert!(!body["cards"].as_array().expect("cards").is_empty());
    auditor.flush().await;
    let counts = auditor.counts();
    assert_eq!((counts.backlog_records, counts.written, counts.lost), (1, 0, 0), "{counts:?}");
    assert!(counts.backlog_bytes > 0);
    let ready: serde_json::Value = app.get("/ready").await.json().await.expect("JSON");
    assert_eq!(ready["resourceType"], "OperationOutcome", "not ready while the database is away");
    // Feedback, unlike the audit, is refused when it cannot be stored.
    let item = feedback_item(&uuid::Uuid::new_v4().to_string(), "overridden", "2026-11-24T12:00:00Z");
    let response = app.post_json(&format!("{SERVICE}/feedback"), &json!({ "feedback": [item] })).await;
    assert_eq!(response.status().as_u16(), 503);

    database.bring_up().await;
    let stored = audited(&database.store(), request["hookInstance"].as_str().expect("hookInstance")).await;
    assert_eq!(stored.len(), 1, "written once the database is back");
    let counts = eventually(Duration::from_secs(10), || async {
        let counts = auditor.counts();
        (counts.backlog_records == 0).then_some(counts)
    })
    .await
    .expect("the spool drains");
    assert_eq!((counts.written, counts.backlog_bytes, counts.lost), (1, 0, 0), "{counts:?}");
}

#[tokio::test]
async fn a_burst_far_over_what_one_write_takes_loses_no_audit_record() {
    let database = TestDatabase::new(Backend::Sqlite).await;
    let settings = test_settings(|s| s.database.url = SecretString::from(database.url.clone()));
    let (app, auditor) = spawn_app_keeping_auditor(settings).await;
    let request = vignette_request("baker-cyst-with-mechanical-symptoms");
    let calls = (0..400).map(|i| {
        let mut request = request.clone();
        request["hookInstance"] = json!(format!("burst-{i}"));
        let app = &app;
        async move { app.post_json(SERVICE, &request).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|status| *status == 200));
    let counts = eventually(Duration::from_secs(30), || async {
        let counts = auditor.counts();
        (counts.written == 400).then_some(counts)
    })
    .await
    .unwrap_or_else(|| panic!("all 400 records written: {:?}", auditor.counts()));
    assert_eq!((counts.backlog_records, counts.lost), (0, 0));
}

fn record_at(invoked_at: OffsetDateTime, hook_instance: &str) -> AuditRecord {
    AuditRecord {
        invocation_id: uuid::Uuid::new_v4(),
        hook_instance: hook_instance.to_owned(),
        service_id: SERVICE_ID.to_owned(),
        hook: "patient-view".to_owned(),
        invoked_at,
        rules_version: RULES_VERSION.to_owned(),
        patient_hash: PatientHasher::new(test_key()).hash("p-1"),
        latency: Duration::from_millis(12),
        data_sources: vec![("patient".to_owned(), "prefetch".to_owned())],
        cards: vec![AuditedCard {
            uuid: uuid::Uuid::new_v4(),
            topic: "baker-cyst".to_owned(),
            indicator: "warning".to_owned(),
            suggestions: vec![uuid::Uuid::new_v4()],
        }],
    }
}

fn overridden(card: uuid::Uuid, at: OffsetDateTime) -> popliteal::protocol::feedback::FeedbackItem {
    popliteal::protocol::feedback::FeedbackItem {
        card,
        outcome: popliteal::protocol::feedback::FeedbackOutcome::Overridden { reason: None },
        outcome_timestamp: at,
    }
}

async fn the_purge_deletes_what_is_older_than_the_retention_period(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let store = database.store();
    let now = time::macros::datetime!(2026-11-24 12:00 UTC);
    let (old, recent) =
        (record_at(now - time::Duration::days(40), "old"), record_at(now - time::Duration::days(2), "new"));
    for record in [&old, &recent] {
        store.record_invocation(record).await.expect("stored");
        store.record_invocation(record).await.expect("a repeated write is harmless");
    }
    let old_feedback = overridden(old.cards[0].uuid, now - time::Duration::days(40));
    store.record_feedback(SERVICE_ID, &[old_feedback], now - time::Duration::days(40)).await.expect("stored");
    let recent_feedback = overridden(recent.cards[0].uuid, now - time::Duration::days(2));
    store.record_feedback(SERVICE_ID, &[recent_feedback], now - time::Duration::days(2)).await.expect("stored");

    let purged = store.purge(now, time::Duration::days(30)).await.expect("purged");
    assert_eq!((purged.invocations, purged.feedback), (1, 1));
    assert!(store.invocations("old").await.expect("readable").is_empty());
    let kept = store.invocations("new").await.expect("readable");
    assert_eq!(kept, vec![recent.clone()], "the record reads back as it was written");
    let feedback = store.feedback(SERVICE_ID).await.expect("readable");
    assert_eq!(feedback.len(), 1);
    assert_eq!(feedback[0].card, recent.cards[0].uuid);
    assert!(feedback[0].card_known);

    let again = store.purge(now, time::Duration::days(30)).await.expect("purged");
    assert_eq!((again.invocations, again.feedback), (0, 0));
    // A month later the rest goes too.
    let later = store.purge(now + time::Duration::days(31), time::Duration::days(30)).await.expect("purged");
    assert_eq!((later.invocations, later.feedback), (1, 1));
}

async fn the_application_purges_on_a_schedule(backend: Backend) {
    let database = TestDatabase::new(backend).await;
    let store = database.store();
    let old = record_at(OffsetDateTime::now_utc() - time::Duration::days(3), "old-on-schedule");
    store.record_invocation(&old).await.expect("stored");
    let _app = spawn_app_on(&database, |s| {
        s.audit.retention_days = std::num::NonZeroU32::new(1).expect("positive");
        s.audit.purge_interval_seconds = std::num::NonZeroU64::new(1).expect("positive");
    })
    .await;
    let gone = eventually(Duration::from_secs(10), || async {
        store.invocations("old-on-schedule").await.ok().filter(Vec::is_empty).map(|_| ())
    })
    .await;
    assert!(gone.is_some(), "the scheduled purge removed the old record");
}

on_both_backends!(
    each_hook_call_is_audited_with_its_cards_suggestions_sources_and_latency,
    a_hook_call_is_answered_while_the_audit_store_is_away_and_its_record_waits_in_the_spool_until_it_is_back,
    the_purge_deletes_what_is_older_than_the_retention_period,
    the_application_purges_on_a_schedule,
);
