//! The `schedules` table on SQLite: upserts and tick records run on the writer thread
//! (inside its transactions), reads on the sqlx pool.

use rusqlite::{Transaction, params};
use sqlx::SqlitePool;

use crate::store::{Schedule, StoreError, StoredSchedule, TickRecord, rows};

/// Upserts schedules by job (called inside the writer's `apply`); `active_since` moves to
/// now when a schedule is added, enabled again, or its cron or zone changes.
pub(super) fn upsert(tx: &Transaction<'_>, schedules: &[Schedule], now: &str) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO schedules (job, cron, timezone, payload_json, enabled, missed, updated_at, active_since) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT(job) DO UPDATE SET \
         active_since = CASE WHEN schedules.enabled = 0 AND excluded.enabled <> 0 \
           OR schedules.cron <> excluded.cron OR schedules.timezone <> excluded.timezone \
           THEN excluded.active_since ELSE schedules.active_since END, \
         cron = excluded.cron, timezone = excluded.timezone, payload_json = excluded.payload_json, \
         enabled = excluded.enabled, missed = excluded.missed, updated_at = excluded.updated_at",
    )?;
    for s in schedules {
        stmt.execute(params![
            s.job,
            s.cron,
            s.timezone,
            s.payload_json,
            i64::from(s.enabled),
            s.missed.as_str(),
            now
        ])?;
    }
    Ok(())
}

/// Moves `last_scheduled_at` up (the text form sorts chronologically).
pub(super) fn record(tx: &Transaction<'_>, ticks: &[TickRecord]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "UPDATE schedules SET last_scheduled_at = ?2 \
         WHERE job = ?1 AND (last_scheduled_at IS NULL OR last_scheduled_at < ?2)",
    )?;
    for t in ticks {
        stmt.execute(params![t.job, t.at])?;
    }
    Ok(())
}

/// Every schedule, by job.
pub(super) async fn all(pool: &SqlitePool) -> Result<Vec<StoredSchedule>, StoreError> {
    let rows = sqlx::query(
        "SELECT job, cron, timezone, payload_json, enabled, missed, last_scheduled_at, active_since \
         FROM schedules ORDER BY job",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(rows::schedule).collect::<Result<_, _>>()?)
}

/// The definitions' change counter.
pub(super) async fn version(pool: &SqlitePool) -> Result<i64, StoreError> {
    let v: Option<i64> = sqlx::query_scalar("SELECT value FROM switchyard_meta WHERE key = 'schedules_version'")
        .fetch_optional(pool)
        .await?;
    Ok(v.unwrap_or(0))
}
