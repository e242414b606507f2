//! The `schedules` table on PostgreSQL. A trigger bumps `schedules_version` and sends
//! `NOTIFY switchyard_schedules` on every change of a definition, whoever makes it.

use sqlx::PgConnection;
use sqlx::postgres::PgPool;

use crate::store::{Schedule, StoredSchedule, TickRecord, rows};

/// The NOTIFY channel the schedules trigger announces changes on (payload: the schema).
pub const SCHEDULES_CHANNEL: &str = "switchyard_schedules";

/// Upserts schedules by job inside the caller's transaction; `active_since` moves to now
/// when a schedule is added, enabled again, or its cron or zone changes.
pub(super) async fn upsert(conn: &mut PgConnection, schedules: &[Schedule], now: &str) -> Result<(), sqlx::Error> {
    for s in schedules {
        sqlx::query(
            "INSERT INTO schedules (job, cron, timezone, payload_json, enabled, missed, updated_at, active_since) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (job) DO UPDATE SET \
             active_since = CASE WHEN schedules.enabled = 0 AND EXCLUDED.enabled <> 0 \
               OR schedules.cron <> EXCLUDED.cron OR schedules.timezone <> EXCLUDED.timezone \
               THEN EXCLUDED.active_since ELSE schedules.active_since END, \
             cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, payload_json = EXCLUDED.payload_json, \
             enabled = EXCLUDED.enabled, missed = EXCLUDED.missed, updated_at = EXCLUDED.updated_at",
        )
        .bind(&s.job)
        .bind(&s.cron)
        .bind(&s.timezone)
        .bind(&s.payload_json)
        .bind(i64::from(s.enabled))
        .bind(s.missed.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Moves `last_scheduled_at` up, one statement for all ticks (the text form sorts
/// chronologically under COLLATE "C").
pub(super) async fn record(pool: &PgPool, ticks: &[TickRecord]) -> Result<(), sqlx::Error> {
    let jobs: Vec<&str> = ticks.iter().map(|t| t.job.as_str()).collect();
    let ats: Vec<&str> = ticks.iter().map(|t| t.at.as_str()).collect();
    sqlx::query(
        "UPDATE schedules s SET last_scheduled_at = t.at \
         FROM (SELECT job, max(at COLLATE \"C\") AS at FROM unnest($1::text[], $2::text[]) AS u(job, at) \
               GROUP BY job) t \
         WHERE s.job = t.job AND (s.last_scheduled_at IS NULL OR s.last_scheduled_at < t.at)",
    )
    .bind(jobs)
    .bind(ats)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every schedule, by job.
pub(super) async fn all(pool: &PgPool) -> Result<Vec<StoredSchedule>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT job, cron, timezone, payload_json, enabled, missed, last_scheduled_at, active_since \
         FROM schedules ORDER BY job",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(rows::schedule).collect()
}

/// The definitions' change counter.
pub(super) async fn version(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar("SELECT value FROM switchyard_meta WHERE key = 'schedules_version'")
        .fetch_optional(pool)
        .await?;
    Ok(v.unwrap_or(0))
}
