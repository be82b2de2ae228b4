//! Audit records: one transaction per hook call. Writing the same record twice (a retry after an
//! ambiguous failure) stores it once.

use sqlx::Row;
use uuid::Uuid;

use super::{Store, StoreError, from_micros, micros};
use crate::audit::{AuditRecord, AuditedCard};

fn uuid_of(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Failed("a stored uuid is not a uuid".into()))
}

impl Store {
    /// Stores one hook call's audit record.
    pub async fn record_invocation(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.record_invocations(std::slice::from_ref(record)).await
    }

    /// Stores several hook calls' audit records in one transaction (one commit per batch), with
    /// one multi-row statement per table: a statement per row was a round trip each, and the
    /// writer fell behind a busy service at a few thousand calls/s.
    #[tracing::instrument(name = "store audit records", skip_all, fields(records = records.len()))]
    pub async fn record_invocations(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        let rows = AuditRows::of(records);
        let mut transaction = self.begin_write().await?;
        insert_rows(&mut transaction, INVOCATION, rows.invocations).await?;
        insert_rows(&mut transaction, DATA_SOURCE, rows.data_sources).await?;
        insert_rows(&mut transaction, CARD, rows.cards).await?;
        insert_rows(&mut transaction, SUGGESTION, rows.suggestions).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// The audit records of a hookInstance, as they were stored (for operators and tests).
    pub async fn invocations(&self, hook_instance: &str) -> Result<Vec<AuditRecord>, StoreError> {
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
                cards.push(AuditedCard {
                    uuid: uuid_of(&card_uuid)?,
                    topic: card.try_get("topic")?,
                    indicator: card.try_get("indicator")?,
                    suggestions,
                });
            }
            let latency_us: i64 = row.try_get("latency_us")?;
            invocations.push(AuditRecord {
                invocation_id: uuid_of(&invocation_id)?,
                hook_instance: row.try_get("hook_instance")?,
                service_id: row.try_get("service_id")?,
                hook: row.try_get("hook")?,
                invoked_at: from_micros(row.try_get("invoked_at")?),
                rules_version: row.try_get("rules_version")?,
                patient_hash: row.try_get("patient_hash")?,
                latency: std::time::Duration::from_micros(u64::try_from(latency_us).unwrap_or(0)),
                data_sources,
                cards,
            });
        }
        Ok(invocations)
    }
}

/// A table and its columns, as `INSERT INTO` names them.
struct Table {
    name_and_columns: &'static str,
    columns: usize,
}

const INVOCATION: Table = Table {
    name_and_columns: "audit_invocation (invocation_id, hook_instance, service_id, hook, invoked_at, rules_version, \
                       patient_hash, latency_us)",
    columns: 8,
};
const DATA_SOURCE: Table =
    Table { name_and_columns: "audit_data_source (invocation_id, data_key, origin)", columns: 3 };
const CARD: Table = Table {
    name_and_columns: "audit_card (card_uuid, invocation_id, service_id, position, topic, indicator, shown_at)",
    columns: 7,
};
const SUGGESTION: Table = Table { name_and_columns: "audit_suggestion (suggestion_uuid, card_uuid)", columns: 2 };

/// Bound parameters per statement, at most. Far under SQLite's 32,766 and PostgreSQL's 65,535
/// limits, and small on purpose: SQLite finds a numbered parameter's name by walking a list, so
/// the cost of binding grows with the square of the parameters of one statement.
const PARAMETERS_PER_STATEMENT: usize = 240;

enum Cell {
    Text(String),
    Integer(i64),
}

/// The rows of a batch of audit records, table by table, in the order foreign keys need.
#[derive(Default)]
struct AuditRows {
    invocations: Vec<Cell>,
    data_sources: Vec<Cell>,
    cards: Vec<Cell>,
    suggestions: Vec<Cell>,
}

impl AuditRows {
    fn of(records: &[AuditRecord]) -> AuditRows {
        use Cell::{Integer, Text};
        let mut rows = AuditRows::default();
        for record in records {
            let invocation_id = record.invocation_id.to_string();
            let invoked_at = micros(record.invoked_at);
            rows.invocations.extend([
                Text(invocation_id.clone()),
                Text(record.hook_instance.clone()),
                Text(record.service_id.clone()),
                Text(record.hook.clone()),
                Integer(invoked_at),
                Text(record.rules_version.clone()),
                Text(record.patient_hash.clone()),
                Integer(i64::try_from(record.latency.as_micros()).unwrap_or(i64::MAX)),
            ]);
            for (key, origin) in &record.data_sources {
                rows.data_sources.extend([Text(invocation_id.clone()), Text(key.clone()), Text(origin.clone())]);
            }
            for (position, card) in record.cards.iter().enumerate() {
                let card_uuid = card.uuid.to_string();
                for suggestion in &card.suggestions {
                    rows.suggestions.extend([Text(suggestion.to_string()), Text(card_uuid.clone())]);
                }
                rows.cards.extend([
                    Text(card_uuid),
                    Text(invocation_id.clone()),
                    Text(record.service_id.clone()),
                    Integer(i64::try_from(position).unwrap_or(i64::MAX)),
                    Text(card.topic.clone()),
                    Text(card.indicator.clone()),
                    Integer(invoked_at),
                ]);
            }
        }
        rows
    }
}

/// `INSERT INTO table (...) VALUES ($1, ...), (...) ON CONFLICT DO NOTHING` for `rows` rows.
fn insert_statement(table: &Table, rows: usize) -> String {
    use std::fmt::Write;
    let mut sql = format!("INSERT INTO {} VALUES ", table.name_and_columns);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..table.columns {
            let separator = if column == 0 { "" } else { ", " };
            let _ = write!(sql, "{separator}${}", row * table.columns + column + 1);
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    sql
}

async fn insert_rows(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    table: Table,
    cells: Vec<Cell>,
) -> Result<(), StoreError> {
    let rows_per_statement = (PARAMETERS_PER_STATEMENT / table.columns).max(1);
    for chunk in cells.chunks(table.columns * rows_per_statement) {
        let sql = insert_statement(&table, chunk.len() / table.columns);
        // Built from the table constants and parameter numbers only: no data is in the text.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for cell in chunk {
            query = match cell {
                Cell::Text(text) => query.bind(text),
                Cell::Integer(number) => query.bind(*number),
            };
        }
        query.execute(&mut **transaction).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_inserts_many_rows_with_numbered_parameters() {
        assert_eq!(
            insert_statement(&SUGGESTION, 2),
            "INSERT INTO audit_suggestion (suggestion_uuid, card_uuid) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
    }
}
