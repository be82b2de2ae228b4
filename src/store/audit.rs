//! Audit records: one transaction per hook call. Writing the same record twice (a retry after an
//! ambiguous failure) stores it once.

use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError, from_micros, micros};
use crate::audit::AuditRecord;

/// An audit record read back (for operators and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInvocation {
    pub invocation_id: String,
    pub hook_instance: String,
    pub service_id: String,
    pub hook: String,
    pub invoked_at: OffsetDateTime,
    pub rules_version: String,
    pub patient_hash: String,
    pub latency_us: i64,
    /// (prefetch key, origin), by key.
    pub data_sources: Vec<(String, String)>,
    /// In the order they were answered.
    pub cards: Vec<StoredCard>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredCard {
    pub uuid: Uuid,
    pub topic: String,
    pub indicator: String,
    pub suggestions: Vec<Uuid>,
}

fn uuid_of(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Failed("a stored uuid is not a uuid".into()))
}

impl Store {
    /// Stores one hook call's audit record.
    pub async fn record_invocation(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.record_invocations(std::slice::from_ref(record)).await
    }

    /// Stores several hook calls' audit records in one transaction: one commit per batch keeps
    /// the writer ahead of a busy service.
    #[tracing::instrument(name = "store audit records", skip_all, fields(records = records.len()))]
    pub async fn record_invocations(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        let mut transaction = self.begin_write().await?;
        for record in records {
            insert_invocation(&mut transaction, record).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// The audit records of a hookInstance, oldest first.
    pub async fn invocations(&self, hook_instance: &str) -> Result<Vec<StoredInvocation>, StoreError> {
        self.migrate().await?;
        let rows = sqlx::query(
            "SELECT invocation_id, hook_instance, service_id, hook, invoked_at, rules_version, patient_hash, \
             latency_us FROM audit_invocation WHERE hook_instance = $1 ORDER BY invoked_at, invocation_id",
        )
        .bind(hook_instance)
        .fetch_all(&self.pool)
        .await?;
        let mut invocations = Vec::with_capacity(rows.len());
        for row in rows {
            let invocation_id: String = row.try_get("invocation_id")?;
            let data_sources = sqlx::query(
                "SELECT data_key, origin FROM audit_data_source WHERE invocation_id = $1 ORDER BY data_key",
            )
            .bind(&invocation_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("data_key")?, row.try_get("origin")?)))
            .collect::<Result<Vec<(String, String)>, sqlx::Error>>()?;
            let card_rows = sqlx::query(
                "SELECT card_uuid, topic, indicator FROM audit_card WHERE invocation_id = $1 ORDER BY position",
            )
            .bind(&invocation_id)
            .fetch_all(&self.pool)
            .await?;
            let mut cards = Vec::with_capacity(card_rows.len());
            for card in card_rows {
                let card_uuid: String = card.try_get("card_uuid")?;
                let suggestions = sqlx::query_scalar::<_, String>(
                    "SELECT suggestion_uuid FROM audit_suggestion WHERE card_uuid = $1 ORDER BY suggestion_uuid",
                )
                .bind(&card_uuid)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|text| uuid_of(text))
                .collect::<Result<Vec<Uuid>, StoreError>>()?;
                cards.push(StoredCard {
                    uuid: uuid_of(&card_uuid)?,
                    topic: card.try_get("topic")?,
                    indicator: card.try_get("indicator")?,
                    suggestions,
                });
            }
            invocations.push(StoredInvocation {
                invocation_id,
                hook_instance: row.try_get("hook_instance")?,
                service_id: row.try_get("service_id")?,
                hook: row.try_get("hook")?,
                invoked_at: from_micros(row.try_get("invoked_at")?),
                rules_version: row.try_get("rules_version")?,
                patient_hash: row.try_get("patient_hash")?,
                latency_us: row.try_get("latency_us")?,
                data_sources,
                cards,
            });
        }
        Ok(invocations)
    }
}

/// Inserts one audit record inside a write transaction.
async fn insert_invocation(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    record: &AuditRecord,
) -> Result<(), StoreError> {
    let invocation_id = record.invocation_id.to_string();
    let invoked_at = micros(record.invoked_at);
    sqlx::query(
        "INSERT INTO audit_invocation (invocation_id, hook_instance, service_id, hook, invoked_at, \
             rules_version, patient_hash, latency_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT DO NOTHING",
    )
    .bind(&invocation_id)
    .bind(&record.hook_instance)
    .bind(&record.service_id)
    .bind(&record.hook)
    .bind(invoked_at)
    .bind(&record.rules_version)
    .bind(&record.patient_hash)
    .bind(i64::try_from(record.latency.as_micros()).unwrap_or(i64::MAX))
    .execute(&mut **transaction)
    .await?;
    for (key, origin) in &record.data_sources {
        sqlx::query(
            "INSERT INTO audit_data_source (invocation_id, data_key, origin) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
        )
        .bind(&invocation_id)
        .bind(key)
        .bind(origin)
        .execute(&mut **transaction)
        .await?;
    }
    for (position, card) in record.cards.iter().enumerate() {
        let card_uuid = card.uuid.to_string();
        sqlx::query(
            "INSERT INTO audit_card (card_uuid, invocation_id, service_id, position, topic, indicator, \
                 shown_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&card_uuid)
        .bind(&invocation_id)
        .bind(&record.service_id)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .bind(&card.topic)
        .bind(&card.indicator)
        .bind(invoked_at)
        .execute(&mut **transaction)
        .await?;
        for suggestion in &card.suggestions {
            sqlx::query(
                "INSERT INTO audit_suggestion (suggestion_uuid, card_uuid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(suggestion.to_string())
            .bind(&card_uuid)
            .execute(&mut **transaction)
            .await?;
        }
    }
    Ok(())
}
