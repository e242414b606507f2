//! Usage and spend on PostgreSQL (CONTRACT §14); the statements are
//! [`crate::store::spend`]'s.

use sqlx::{PgPool, Row};

use crate::store::spend::{self, RunUsage, SpendCell, TopRun, UsageRecord};

/// Inserts the ledger row and sets the run's latest usage and transcript, in one transaction.
pub(super) async fn record(pool: &PgPool, r: &UsageRecord) -> Result<(), sqlx::Error> {
    let u = &r.usage;
    let mut tx = pool.begin().await?;
    sqlx::query(spend::INSERT_LEDGER)
        .bind(r.event_row_id)
        .bind(&r.action)
        .bind(r.handler_mode.as_str())
        .bind(&u.model)
        .bind(&r.started_at)
        .bind(&r.finished_at)
        .bind(u.cost_usd)
        .bind(spend::count(u.input_tokens))
        .bind(spend::count(u.output_tokens))
        .bind(spend::count(u.cache_read_tokens))
        .bind(spend::count(u.cache_creation_tokens))
        .bind(&u.stop)
        .execute(&mut *tx)
        .await?;
    sqlx::query(spend::UPDATE_RUN)
        .bind(serde_json::to_string(u).ok())
        .bind(&r.transcript)
        .bind(r.event_row_id)
        .bind(&r.action)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Usage of an event's runs.
pub(super) async fn run_usage(pool: &PgPool, event_row_id: i64) -> Result<Vec<RunUsage>, sqlx::Error> {
    let rows = sqlx::query(spend::RUN_USAGE).bind(event_row_id).fetch_all(pool).await?;
    rows.iter().map(spend::run_usage).collect()
}

/// One run's transcript.
pub(super) async fn transcript(
    pool: &PgPool,
    event_row_id: i64,
    run_id: i64,
) -> Result<Option<Option<String>>, sqlx::Error> {
    let row = sqlx::query(spend::TRANSCRIPT)
        .bind(event_row_id)
        .bind(run_id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// Spend cells since `since`.
pub(super) async fn cells(pool: &PgPool, since: &str) -> Result<Vec<SpendCell>, sqlx::Error> {
    let rows = sqlx::query(spend::CELLS).bind(since).fetch_all(pool).await?;
    rows.iter().map(spend::cell).collect()
}

/// The costliest attempts since `since`.
pub(super) async fn top(pool: &PgPool, since: &str, limit: u32) -> Result<Vec<TopRun>, sqlx::Error> {
    let rows = sqlx::query(spend::TOP)
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(spend::top_run).collect()
}
