//! Feedback items: all the items of one request in one transaction, committed before the
//! handler answers 200. An item is stored once per (card, outcome, outcomeTimestamp): a repeat is
//! counted as a duplicate and changes nothing.
//!
//! An item about a card the audit trail does not hold is stored all the same, and marked when
//! read (`card_known`, `feedbackOnUnknownCards`): the mark is a join, not a stored flag, because
//! the audit record is written asynchronously and may land after the feedback on its card (a
//! flag set on receipt would race with it under PostgreSQL's READ COMMITTED).

use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError, from_micros, micros};
use crate::protocol::feedback::{FeedbackItem, FeedbackOutcome};
use crate::terminology::Coding;

/// What a feedback request changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedbackReceipt {
    pub stored: usize,
    /// Items already stored (sent before, or twice in the request).
    pub duplicates: usize,
    /// Stored items about a card the audit trail did not hold on receipt.
    pub unknown_cards: usize,
}

/// A feedback item read back (for operators and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFeedback {
    pub service_id: String,
    pub card: Uuid,
    pub outcome: String,
    pub outcome_at: OffsetDateTime,
    pub received_at: OffsetDateTime,
    /// Whether the audit trail holds the card (false: feedback about an unknown card).
    pub card_known: bool,
    pub reason: Option<Coding>,
    pub user_comment: Option<String>,
    pub accepted_suggestions: Vec<String>,
}

impl Store {
    /// Stores the items of one request durably: when this returns `Ok`, they are committed.
    #[tracing::instrument(name = "store feedback", skip_all)]
    pub async fn record_feedback(
        &self,
        service_id: &str,
        items: &[FeedbackItem],
        received_at: OffsetDateTime,
    ) -> Result<FeedbackReceipt, StoreError> {
        let mut receipt = FeedbackReceipt::default();
        let mut transaction = self.begin_write().await?;
        for item in items {
            let card = item.card.to_string();
            let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_card WHERE card_uuid = $1")
                .bind(&card)
                .fetch_one(&mut *transaction)
                .await?;
            let (reason, comment, suggestions) = match &item.outcome {
                FeedbackOutcome::Accepted { suggestions } => (None, None, suggestions.as_slice()),
                FeedbackOutcome::Overridden { reason } => (
                    reason.as_ref().and_then(|r| r.reason.as_ref()),
                    reason.as_ref().and_then(|r| r.user_comment.as_deref()),
                    &[][..],
                ),
            };
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO feedback (service_id, card_uuid, outcome, outcome_at, received_at, reason_system, \
                 reason_code, reason_display, user_comment) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT DO NOTHING RETURNING feedback_id",
            )
            .bind(service_id)
            .bind(&card)
            .bind(item.outcome.as_str())
            .bind(micros(item.outcome_timestamp))
            .bind(micros(received_at))
            .bind(reason.map(|c| c.system.clone()))
            .bind(reason.map(|c| c.code.clone()))
            .bind(reason.and_then(|c| c.display.clone()))
            .bind(comment.map(str::to_owned))
            .fetch_optional(&mut *transaction)
            .await?;
            let Some(feedback_id) = inserted else {
                receipt.duplicates += 1;
                continue;
            };
            receipt.stored += 1;
            if known == 0 {
                receipt.unknown_cards += 1;
            }
            for suggestion in suggestions {
                sqlx::query(
                    "INSERT INTO feedback_suggestion (feedback_id, suggestion_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(feedback_id)
                .bind(suggestion.to_string())
                .execute(&mut *transaction)
                .await?;
            }
        }
        transaction.commit().await?;
        Ok(receipt)
    }

    /// Every feedback item stored for a service, in the order received.
    pub async fn feedback(&self, service_id: &str) -> Result<Vec<StoredFeedback>, StoreError> {
        self.migrate().await?;
        let rows = sqlx::query(
            "SELECT f.feedback_id, f.service_id, f.card_uuid, f.outcome, f.outcome_at, f.received_at, f.reason_system, \
             f.reason_code, f.reason_display, f.user_comment, \
             CASE WHEN EXISTS (SELECT 1 FROM audit_card c WHERE c.card_uuid = f.card_uuid) THEN 1 ELSE 0 END \
             AS card_known FROM feedback f WHERE f.service_id = $1 ORDER BY f.feedback_id",
        )
        .bind(service_id)
        .fetch_all(&self.pool)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let feedback_id: i64 = row.try_get("feedback_id")?;
            let accepted_suggestions = sqlx::query_scalar::<_, String>(
                "SELECT suggestion_id FROM feedback_suggestion WHERE feedback_id = $1 ORDER BY suggestion_id",
            )
            .bind(feedback_id)
            .fetch_all(&self.pool)
            .await?;
            let card: String = row.try_get("card_uuid")?;
            let system: Option<String> = row.try_get("reason_system")?;
            let code: Option<String> = row.try_get("reason_code")?;
            let known: i64 = row.try_get("card_known")?;
            items.push(StoredFeedback {
                service_id: row.try_get("service_id")?,
                card: Uuid::parse_str(&card).map_err(|_| StoreError::Failed("a stored card is not a uuid".into()))?,
                outcome: row.try_get("outcome")?,
                outcome_at: from_micros(row.try_get("outcome_at")?),
                received_at: from_micros(row.try_get("received_at")?),
                card_known: known != 0,
                reason: match (system, code) {
                    (Some(system), Some(code)) => {
                        Some(Coding { system, code, display: row.try_get("reason_display")? })
                    }
                    _ => None,
                },
                user_comment: row.try_get("user_comment")?,
                accepted_suggestions,
            });
        }
        Ok(items)
    }
}
