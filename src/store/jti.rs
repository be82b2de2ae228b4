//! The `jti`s of accepted EHR tokens, shared by every replica on one PostgreSQL database: a
//! token accepted by one replica is refused by all the others until it expires.

use super::{Store, StoreError};

impl Store {
    /// Remembers `(iss, jti)` until `expires_at` (seconds since the epoch). `true`: first use
    /// (or the earlier use has expired); `false`: a replay. One statement, atomic across
    /// replicas (the primary key decides).
    pub async fn remember_jti(&self, iss: &str, jti: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        self.migrate().await?;
        let result = sqlx::query(
            "INSERT INTO auth_jti (iss, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (iss, jti) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE auth_jti.expires_at < $4",
        )
        .bind(iss)
        .bind(jti)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes the rows of tokens expired before `now`; returns how many.
    pub async fn purge_expired_jtis(&self, now: i64) -> Result<u64, StoreError> {
        self.migrate().await?;
        let result = sqlx::query("DELETE FROM auth_jti WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
        Ok(result.rows_affected())
    }
}
