//! Dashboard sessions ended by a logout (migration 0025).

use sqlx::PgPool;

/// Records `nonce` as ended and deletes the rows of sessions that have expired since.
pub(super) async fn revoke(pool: &PgPool, nonce: &str, expires_at: i64) -> Result<(), sqlx::Error> {
    let now = chrono::Utc::now().timestamp();
    sqlx::query("DELETE FROM ui_revoked_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO ui_revoked_sessions (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING")
        .bind(nonce)
        .bind(expires_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether `nonce` was ended.
pub(super) async fn revoked(pool: &PgPool, nonce: &str) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM ui_revoked_sessions WHERE nonce = $1")
        .bind(nonce)
        .fetch_optional(pool)
        .await?;
    Ok(found.is_some())
}
