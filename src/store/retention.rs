//! Retention: audit records older than the retention period (by call time) and feedback older
//! than it (by arrival time) are deleted, in one transaction.

use time::{Duration, OffsetDateTime};

use super::{Store, StoreError, micros};

/// What a purge deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub invocations: u64,
    pub feedback: u64,
}

impl Store {
    /// Deletes what is older than `now - retention`. `now` is a parameter so tests can move the
    /// clock.
    pub async fn purge(&self, now: OffsetDateTime, retention: Duration) -> Result<Purged, StoreError> {
        let cutoff = micros(now - retention);
        let mut transaction = self.begin_write().await?;
        // Children first: the foreign keys cascade too, but this does not rely on them.
        sqlx::query(
            "DELETE FROM audit_suggestion WHERE card_uuid IN (SELECT c.card_uuid FROM audit_card c \
             JOIN audit_invocation i ON i.invocation_id = c.invocation_id WHERE i.invoked_at < $1)",
        )
        .bind(cutoff)
        .execute(&mut *transaction)
        .await?;
        for statement in [
            "DELETE FROM audit_card WHERE invocation_id IN \
             (SELECT invocation_id FROM audit_invocation WHERE invoked_at < $1)",
            "DELETE FROM audit_data_source WHERE invocation_id IN \
             (SELECT invocation_id FROM audit_invocation WHERE invoked_at < $1)",
            "DELETE FROM feedback_suggestion WHERE feedback_id IN \
             (SELECT feedback_id FROM feedback WHERE received_at < $1)",
        ] {
            sqlx::query(statement).bind(cutoff).execute(&mut *transaction).await?;
        }
        let invocations = sqlx::query("DELETE FROM audit_invocation WHERE invoked_at < $1")
            .bind(cutoff)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        let feedback = sqlx::query("DELETE FROM feedback WHERE received_at < $1")
            .bind(cutoff)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        transaction.commit().await?;
        Ok(Purged { invocations, feedback })
    }
}
