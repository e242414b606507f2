//! Dashboard sessions ended by a logout (migration 0025).

use rusqlite::{Transaction, params};
use sqlx::SqlitePool;

use crate::store::StoreError;

/// Records `nonce` as ended and deletes the rows of sessions that have expired since.
pub(super) fn revoke(tx: &Transaction<'_>, nonce: &str, expires_at: i64) -> rusqlite::Result<()> {
    let now = chrono::Utc::now().timestamp();
    tx.prepare_cached("DELETE FROM ui_revoked_sessions WHERE expires_at <= ?1")?
        .execute(params![now])?;
    tx.prepare_cached("INSERT OR IGNORE INTO ui_revoked_sessions (nonce, expires_at) VALUES (?1, ?2)")?
        .execute(params![nonce, expires_at])?;
    Ok(())
}

/// Whether `nonce` was ended.
pub(super) async fn revoked(read: &SqlitePool, nonce: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM ui_revoked_sessions WHERE nonce = ?1")
        .bind(nonce)
        .fetch_optional(read)
        .await?;
    Ok(found.is_some())
}
