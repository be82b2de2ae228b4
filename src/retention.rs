//! The scheduled purge: every `audit.purge_interval_seconds` (and once at start), delete audit
//! records and feedback older than `audit.retention_days`, and (PostgreSQL) the ids of expired
//! tokens. A failed purge is logged and tried again at the next tick.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::task::JoinHandle;

use crate::configuration::AuditSettings;
use crate::store::Store;

/// Starts the purge task on the current tokio runtime; abort the handle to stop it.
pub fn spawn(store: Store, settings: &AuditSettings) -> JoinHandle<()> {
    let retention = time::Duration::days(i64::from(settings.retention_days.get()));
    let period = Duration::from_secs(settings.purge_interval_seconds.get());
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match store.purge(OffsetDateTime::now_utc(), retention).await {
                Ok(purged) => tracing::info!(
                    invocations = purged.invocations,
                    feedback = purged.feedback,
                    retention_days = retention.whole_days(),
                    "retention purge"
                ),
                Err(error) => {
                    tracing::warn!(error.detail = %error, "retention purge failed; next try at the next tick")
                }
            }
            if store.backend() == crate::store::Backend::Postgres {
                match store.purge_expired_jtis(OffsetDateTime::now_utc().unix_timestamp()).await {
                    Ok(purged) => tracing::debug!(purged, "expired token ids purged"),
                    Err(error) => tracing::warn!(error.detail = %error, "purging expired token ids failed"),
                }
            }
        }
    })
}
