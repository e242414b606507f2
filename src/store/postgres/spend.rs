//! Usage and spend on PostgreSQL (CONTRACT §14); the statements are
//! [`crate::store::spend`]'s.

use sqlx::{PgPool, Row};

use crate::domain::{ActionBudget, Budget};
use crate::store::ClaimRef;
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

/// Upserts the budgets of a config or CLI change (inside `apply_changes`' transaction).
pub(super) async fn upsert_budgets(
    tx: &mut sqlx::PgConnection,
    budgets: &[ActionBudget],
    now: &str,
) -> Result<(), sqlx::Error> {
    for b in budgets {
        let a = &b.budget;
        sqlx::query(spend::UPSERT_BUDGET)
            .bind(&b.action)
            .bind(a.per_run_usd)
            .bind(a.daily_usd)
            .bind(a.monthly_usd)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Holds a claimed event (`$1` until, `$2` reason, `$3` id, `$4` the claim's attempt): its
/// claim leaves the narrow queue (migration 0020), so no worker sees it until it is
/// released, and its row keeps the attempt count it had before the claim, which gives the
/// attempt back.
const HOLD: &str = "WITH claim AS ( \
       DELETE FROM event_queue WHERE event_row_id = $3 AND attempt = $4 AND leased_until IS NOT NULL \
       RETURNING event_row_id) \
     UPDATE events SET status = 'held', next_attempt_at = $1, last_error = $2, lease_until = NULL \
     WHERE id = (SELECT event_row_id FROM claim)";

/// Makes held events whose time came due (`$1` now) pending again, and queues them
/// (a waiting queue row carries the event's attempt count and its due time).
const RELEASE_HELD: &str = "WITH released AS ( \
       UPDATE events SET status = 'pending' WHERE status = 'held' AND next_attempt_at <= $1 \
       RETURNING id, next_attempt_at, attempt_count), \
     queued AS ( \
       INSERT INTO event_queue (event_row_id, run_at, attempt) \
       SELECT id, next_attempt_at, attempt_count FROM released ON CONFLICT (event_row_id) DO NOTHING) \
     SELECT count(*) FROM released";

/// Holds a claimed event; true when the claim still held.
pub(super) async fn hold(pool: &PgPool, claim: ClaimRef, reason: &str, until: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(HOLD)
        .bind(until)
        .bind(reason)
        .bind(claim.id)
        .bind(claim.attempt)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Makes due held events pending again.
pub(super) async fn release_held(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let released: i64 = sqlx::query_scalar(RELEASE_HELD)
        .bind(crate::time::now())
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(released).unwrap_or(0))
}

/// The budget of one action.
pub(super) async fn budget(pool: &PgPool, action: &str) -> Result<Option<Budget>, sqlx::Error> {
    let row = sqlx::query(spend::BUDGET).bind(action).fetch_optional(pool).await?;
    row.map(|r| spend::budget_at(&r, 0)).transpose()
}

/// Every action's budget.
pub(super) async fn budgets(pool: &PgPool) -> Result<Vec<ActionBudget>, sqlx::Error> {
    let rows = sqlx::query(spend::BUDGETS).fetch_all(pool).await?;
    rows.iter().map(spend::action_budget).collect()
}

/// Recorded spend since `since`.
pub(super) async fn spent(pool: &PgPool, since: &str, action: Option<&str>) -> Result<f64, sqlx::Error> {
    match action {
        Some(a) => {
            sqlx::query_scalar(spend::SPENT_BY_ACTION)
                .bind(since)
                .bind(a)
                .fetch_one(pool)
                .await
        }
        None => sqlx::query_scalar(spend::SPENT).bind(since).fetch_one(pool).await,
    }
}

/// What runs in flight may still cost.
pub(super) async fn reserved(
    pool: &PgPool,
    since: &str,
    except: i64,
    action: Option<&str>,
) -> Result<f64, sqlx::Error> {
    match action {
        Some(a) => {
            sqlx::query_scalar(spend::RESERVED_BY_ACTION)
                .bind(since)
                .bind(except)
                .bind(a)
                .fetch_one(pool)
                .await
        }
        None => {
            sqlx::query_scalar(spend::RESERVED)
                .bind(since)
                .bind(except)
                .fetch_one(pool)
                .await
        }
    }
}
