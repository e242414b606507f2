//! Usage and spend on SQLite (CONTRACT §14): the record runs on the writer thread, reads
//! on the sqlx pool. The statements are [`crate::store::spend`]'s.

use rusqlite::{Transaction, params};
use sqlx::{AssertSqlSafe, Row, SqlitePool};

use crate::domain::{ActionBudget, Budget};
use crate::store::spend::{self, RunUsage, SpendCell, TopRun, UsageRecord};
use crate::store::{ClaimRef, StoreError};

/// Holds a claimed event (`$1` until, `$2` reason, `$3` id, `$4` attempt): the claim's
/// attempt is given back, as a release does. (PostgreSQL's takes the claim off its narrow
/// queue instead: postgres/spend.rs.)
const HOLD: &str = "UPDATE events SET status = 'held', attempt_count = attempt_count - 1, \
     next_attempt_at = $1, last_error = $2, lease_until = NULL \
     WHERE id = $3 AND attempt_count = $4 AND status = 'processing'";

/// Makes held events whose time came due again (`$1` now).
const RELEASE_HELD: &str = "UPDATE events SET status = 'pending' WHERE status = 'held' AND next_attempt_at <= $1";

/// A shared statement with SQLite's numbered placeholders (`?1` for `$1`).
pub(super) fn sql(statement: &str) -> String {
    statement.replace('$', "?")
}

/// Inserts the ledger row and sets the run's latest usage and transcript.
pub(super) fn record(tx: &Transaction<'_>, r: &UsageRecord) -> rusqlite::Result<()> {
    let u = &r.usage;
    tx.prepare_cached(&sql(spend::INSERT_LEDGER))?.execute(params![
        r.event_row_id,
        r.action,
        r.handler_mode.as_str(),
        u.model,
        r.started_at,
        r.finished_at,
        u.cost_usd,
        spend::count(u.input_tokens),
        spend::count(u.output_tokens),
        spend::count(u.cache_read_tokens),
        spend::count(u.cache_creation_tokens),
        u.stop,
    ])?;
    let usage_json = serde_json::to_string(u).ok();
    tx.prepare_cached(&sql(spend::UPDATE_RUN))?
        .execute(params![usage_json, r.transcript, r.event_row_id, r.action])?;
    Ok(())
}

/// Usage of an event's runs.
pub(super) async fn run_usage(pool: &SqlitePool, event_row_id: i64) -> Result<Vec<RunUsage>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(sql(spend::RUN_USAGE)))
        .bind(event_row_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(spend::run_usage).collect::<Result<_, _>>()?)
}

/// One run's transcript.
pub(super) async fn transcript(
    pool: &SqlitePool,
    event_row_id: i64,
    run_id: i64,
) -> Result<Option<Option<String>>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(sql(spend::TRANSCRIPT)))
        .bind(event_row_id)
        .bind(run_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Spend cells since `since`.
pub(super) async fn cells(pool: &SqlitePool, since: &str) -> Result<Vec<SpendCell>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(sql(spend::CELLS)))
        .bind(since)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(spend::cell).collect::<Result<_, _>>()?)
}

/// The costliest attempts since `since`.
pub(super) async fn top(pool: &SqlitePool, since: &str, limit: u32) -> Result<Vec<TopRun>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(sql(spend::TOP)))
        .bind(since)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(spend::top_run).collect::<Result<_, _>>()?)
}

/// Upserts the budgets of a config or CLI change (inside the writer's `apply`).
pub(super) fn upsert_budgets(tx: &Transaction<'_>, budgets: &[ActionBudget], now: &str) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(&sql(spend::UPSERT_BUDGET))?;
    for b in budgets {
        let a = &b.budget;
        stmt.execute(params![b.action, a.per_run_usd, a.daily_usd, a.monthly_usd, now])?;
    }
    Ok(())
}

/// Holds a claimed event; true when the claim still held.
pub(super) fn hold(tx: &Transaction<'_>, claim: ClaimRef, reason: &str, until: &str) -> rusqlite::Result<bool> {
    let changed = tx
        .prepare_cached(&sql(HOLD))?
        .execute(params![until, reason, claim.id, claim.attempt])?;
    Ok(changed == 1)
}

/// Makes due held events pending again.
pub(super) fn release_held(tx: &Transaction<'_>, now: &str) -> rusqlite::Result<u64> {
    Ok(tx.prepare_cached(&sql(RELEASE_HELD))?.execute(params![now])? as u64)
}

/// The budget of one action.
pub(super) async fn budget(pool: &SqlitePool, action: &str) -> Result<Option<Budget>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(sql(spend::BUDGET)))
        .bind(action)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| spend::budget_at(&r, 0)).transpose()?)
}

/// Every action's budget.
pub(super) async fn budgets(pool: &SqlitePool) -> Result<Vec<ActionBudget>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(sql(spend::BUDGETS))).fetch_all(pool).await?;
    Ok(rows.iter().map(spend::action_budget).collect::<Result<_, _>>()?)
}

/// Recorded spend since `since`.
pub(super) async fn spent(pool: &SqlitePool, since: &str, action: Option<&str>) -> Result<f64, StoreError> {
    let q = match action {
        Some(a) => sqlx::query_scalar(AssertSqlSafe(sql(spend::SPENT_BY_ACTION)))
            .bind(since)
            .bind(a.to_owned()),
        None => sqlx::query_scalar(AssertSqlSafe(sql(spend::SPENT))).bind(since),
    };
    Ok(q.fetch_one(pool).await?)
}

/// What runs in flight may still cost.
pub(super) async fn reserved(
    pool: &SqlitePool,
    since: &str,
    except: i64,
    action: Option<&str>,
) -> Result<f64, StoreError> {
    let q = match action {
        Some(a) => sqlx::query_scalar(AssertSqlSafe(sql(spend::RESERVED_BY_ACTION)))
            .bind(since)
            .bind(except)
            .bind(a.to_owned()),
        None => sqlx::query_scalar(AssertSqlSafe(sql(spend::RESERVED)))
            .bind(since)
            .bind(except),
    };
    Ok(q.fetch_one(pool).await?)
}
