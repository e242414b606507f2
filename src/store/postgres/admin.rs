//! Operator queries on PostgreSQL: pages, replay, cancel, bulk replay, statistics, purges.

use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row};

use super::*;
use crate::domain::EventStatus;
use crate::store::counts;
use crate::store::query::{self, Dialect};
use crate::store::{action_states, rows};

/// The WHERE of the `events_finished` index (migration 0031), which a query of a bound
/// status repeats so that the planner sees the index applies.
macro_rules! finished_rows {
    () => {
        "status IN ('done', 'error', 'cancelled', 'skipped', 'superseded')"
    };
}

/// Sets an event back to `pending` with a fresh attempt budget (the columns every replay sets).
const REQUEUE: &str = "status = 'pending', attempt_count = 0, next_attempt_at = $1, last_error = NULL, \
     processed_at = NULL, lease_until = NULL";

/// Puts the events a replay (the CTE `requeued`, column `id`) wrote back on the queue, due
/// at `$1` with no attempt made; a queue row they still have (a pending or retried event)
/// is reset the same way.
const ENQUEUE_REPLAYED: &str = "INSERT INTO event_queue (event_row_id, run_at, attempt) \
     SELECT id, $1, 0 FROM requeued \
     ON CONFLICT (event_row_id) DO UPDATE SET run_at = EXCLUDED.run_at, attempt = 0, claimed_at = NULL, \
       leased_until = NULL";

/// Locks the queue rows of the events `$2` (one id or an array) first, as every statement
/// that writes both tables does; a replay or cancel refuses an event whose row is claimed.
const LOCK_QUEUED: &str = "queued AS MATERIALIZED (SELECT event_row_id, leased_until FROM event_queue \
     WHERE event_row_id = ANY($2) ORDER BY event_row_id FOR NO KEY UPDATE)";

/// A page of events, newest first.
pub(super) async fn list_page(
    pool: &PgPool,
    filter: &EventFilter,
    cursor: Option<&Cursor>,
    limit: u32,
) -> Result<EventPage, sqlx::Error> {
    let (sql, c) = query::page_sql(Dialect::Postgres, filter, cursor);
    let rows = query::bind_all(sqlx::query(AssertSqlSafe(sql)), &c.binds)
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
    let mut page = rows::page(&rows, limit as usize)?;
    if !page.events.is_empty() {
        let ids: Vec<i64> = page.events.iter().map(|e| e.id).collect();
        let runs = sqlx::query_as(action_states::POSTGRES_SQL)
            .bind(&ids)
            .fetch_all(pool)
            .await?;
        action_states::attach(&mut page, runs);
    }
    Ok(page)
}

/// What a single-row transition that changed nothing means.
async fn refused(pool: &PgPool, id: i64) -> Result<Transition, sqlx::Error> {
    let status: Option<String> = sqlx::query_scalar(
        "SELECT CASE WHEN q.leased_until IS NOT NULL THEN 'processing' ELSE e.status END \
         FROM events e LEFT JOIN event_queue q ON q.event_row_id = e.id WHERE e.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(status.map_or(Transition::NotFound, Transition::Conflict))
}

/// Replays one event unless it is processing.
pub(super) async fn replay(pool: &PgPool, id: i64, force: bool) -> Result<Transition, sqlx::Error> {
    let sql = format!(
        "WITH {LOCK_QUEUED}, \
         requeued AS (UPDATE events SET {REQUEUE}, replay_force = $3 WHERE id = ANY($2) AND status <> 'processing' \
           AND NOT EXISTS (SELECT 1 FROM queued WHERE leased_until IS NOT NULL) RETURNING id), \
         queued_again AS ({ENQUEUE_REPLAYED}) \
         SELECT count(*) FROM requeued"
    );
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(crate::time::now())
        .bind([id].as_slice())
        .bind(i64::from(force))
        .fetch_one(pool)
        .await?;
    if n == 1 {
        Ok(Transition::Applied)
    } else {
        refused(pool, id).await
    }
}

/// Cancels an event an operator may cancel (`pending`, `retry`, `held`, `waiting`; a held
/// or waiting one has no queue row); one with a place in flow control's lines gives it up
/// ([`forget_flow`]). The answer says too whether it made waiting events due.
pub(super) async fn cancel(pool: &PgPool, id: i64) -> Result<(Transition, bool), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The locks of the lines it waits in, first and in admission's order (postgres/flow.rs):
    // an admission that saw it in line commits before the line moves on.
    let lines: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT action, flow_key, pool FROM flow_waits WHERE event_row_id = $1")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    let mut locks: Vec<String> = Vec::new();
    for (action, key, pool) in lines {
        locks.push(super::flow::key_lock(&action, &key));
        locks.push(super::flow::action_lock(&action));
        locks.extend(pool.as_deref().map(super::flow::pool_lock));
    }
    super::flow::take_locks(&mut tx, locks).await?;
    let sql = format!(
        "WITH {LOCK_QUEUED}, \
         cancelled AS (UPDATE events SET status = 'cancelled', processed_at = $1, lease_until = NULL \
           WHERE id = ANY($2) AND status IN ('pending', 'retry', 'held', 'waiting') \
           AND NOT EXISTS (SELECT 1 FROM queued WHERE leased_until IS NOT NULL) RETURNING id), \
         dequeued AS (DELETE FROM event_queue q USING cancelled c WHERE q.event_row_id = c.id) \
         SELECT count(*) FROM cancelled"
    );
    let now = crate::time::now();
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(&now)
        .bind([id].as_slice())
        .fetch_one(&mut *tx)
        .await?;
    if n != 1 {
        tx.rollback().await?;
        return Ok((refused(pool, id).await?, false));
    }
    let woke = forget_flow(&mut tx, id, &now).await?;
    tx.commit().await?;
    Ok((Transition::Applied, woke))
}

/// Drops a cancelled event's waiting rows (CONTRACT §13) and the debounce window it held,
/// so that no event stays in line behind it, and makes due the oldest event waiting in each
/// line it left (admission looks at them again; one that still may not start waits again).
/// True when it made any due.
async fn forget_flow(tx: &mut sqlx::PgConnection, id: i64, now: &str) -> Result<bool, sqlx::Error> {
    use crate::store::flow::sql as q;
    let left: Vec<(String, String, Option<String>, String)> =
        sqlx::query_as("DELETE FROM flow_waits WHERE event_row_id = $1 RETURNING action, flow_key, pool, blocked_on")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
    if left.iter().any(|(.., blocked_on)| blocked_on == "debounce") {
        sqlx::query(
            "WITH w AS (DELETE FROM flow_debounce WHERE holder_row_id = $1 RETURNING action, flow_key) \
             DELETE FROM flow_debounced d USING w WHERE d.action = w.action AND d.flow_key = w.flow_key",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let mut woke = false;
    for (action, key, pool, _) in &left {
        let mut next: Vec<Option<i64>> = vec![
            sqlx::query_scalar(q::KEY_WAKE)
                .bind(action)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?,
            sqlx::query_scalar(q::LIMIT_WAKE)
                .bind(action)
                .fetch_optional(&mut *tx)
                .await?,
        ];
        if let Some(pool) = pool {
            next.push(
                sqlx::query_scalar(q::POOL_WAKE)
                    .bind(pool)
                    .fetch_optional(&mut *tx)
                    .await?,
            );
        }
        for w in next.into_iter().flatten() {
            // As flow control wakes a waiter: due now, back on the queue.
            woke |= sqlx::query(
                "WITH w AS (UPDATE events SET status = 'pending', next_attempt_at = $2 \
                   WHERE id = $1 AND status = 'waiting' RETURNING id, attempt_count) \
                 INSERT INTO event_queue (event_row_id, run_at, attempt) \
                 SELECT id, $2, attempt_count FROM w ON CONFLICT (event_row_id) DO NOTHING",
            )
            .bind(w)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
        }
    }
    Ok(woke)
}

/// Every id matching `filter` that is not processing, ascending.
pub(super) async fn matching_ids(pool: &PgPool, filter: &EventFilter) -> Result<Vec<i64>, sqlx::Error> {
    let mut c = filter.clause(Dialect::Postgres);
    c.and(
        Dialect::Postgres,
        "status <> 'processing' AND claim.event_row_id IS NULL",
        vec![],
    );
    let sql = format!("SELECT id FROM {} {} ORDER BY id", query::PG_EVENTS_WITH_CLAIMS, c.sql);
    query::bind_all(sqlx::query(AssertSqlSafe(sql)), &c.binds)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect()
}

/// Replays one chunk of a bulk replay; rows are locked by ascending id and re-checked.
pub(super) async fn replay_ids(pool: &PgPool, ids: &[i64], status: Option<&str>) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "WITH {LOCK_QUEUED}, \
         locked AS (SELECT id FROM events WHERE id = ANY($2) AND status <> 'processing' \
           AND ($3::text IS NULL OR status = $3) \
           AND id NOT IN (SELECT event_row_id FROM queued WHERE leased_until IS NOT NULL) \
           ORDER BY id FOR UPDATE), \
         requeued AS (UPDATE events SET {REQUEUE}, replay_force = 0 FROM locked WHERE events.id = locked.id \
           RETURNING events.id), \
         queued_again AS ({ENQUEUE_REPLAYED}) \
         SELECT count(*) FROM requeued"
    );
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(crate::time::now())
        .bind(ids)
        .bind(status)
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The `next_attempt_at` of the oldest due event.
async fn oldest_due(pool: &PgPool) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT MIN(run_at) FROM event_queue WHERE leased_until IS NULL AND run_at <= $1")
        .bind(crate::time::now())
        .fetch_one(pool)
        .await
}

/// Counts for `/stats`.
pub(super) async fn stats(pool: &PgPool) -> Result<Stats, sqlx::Error> {
    let mut stats = Stats::default();
    for status in query::STATUSES {
        stats.by_status.insert((*status).to_string(), 0);
    }
    // Two reads, each on its index: the status index holds no `done` rows.
    for r in sqlx::query(counts::PG_COUNT_NOT_DONE).fetch_all(pool).await? {
        stats.by_status.insert(r.try_get("status")?, r.try_get("n")?);
    }
    let done: i64 = sqlx::query_scalar(concat!(
        "SELECT COUNT(*) FROM events WHERE ",
        finished_rows!(),
        " AND status = 'done'"
    ))
    .fetch_one(pool)
    .await?;
    stats.by_status.insert(EventStatus::Done.as_str().to_string(), done);
    stats.oldest_due_age_seconds = oldest_due(pool).await?.as_deref().and_then(crate::time::age_seconds);
    let rate = |status: EventStatus, since: String| async move {
        sqlx::query_scalar::<_, i64>(concat!(
            "SELECT COUNT(*) FROM events WHERE ",
            finished_rows!(),
            " AND status = $1 AND processed_at >= $2"
        ))
        .bind(status.as_str())
        .bind(since)
        .fetch_one(pool)
        .await
    };
    counts::fill_rates(&mut stats, rate).await?;
    Ok(stats)
}

/// Events received per minute: key (the first 16 characters of the timestamp), count.
const PER_MINUTE_RECEIVED: &str = "SELECT substr(received_at, 1, 16) AS m, COUNT(*) AS n FROM events \
     WHERE received_at >= $1 AND received_at < $2 GROUP BY m";

/// Events finished done or error per minute: status, key, count (the first IN is the
/// `events_finished` index's WHERE).
const PER_MINUTE_FINISHED: &str = concat!(
    "SELECT status, substr(processed_at, 1, 16) AS m, COUNT(*) AS n FROM events WHERE ",
    finished_rows!(),
    " AND status IN ('done', 'error') AND processed_at >= $1 AND processed_at < $2 GROUP BY status, m"
);

/// Received and finished counts per minute of the window ending with `now`'s minute.
pub(super) async fn per_minute(
    pool: &PgPool,
    now: chrono::DateTime<chrono::Utc>,
    minutes: u32,
) -> Result<Vec<MinuteCounts>, sqlx::Error> {
    let w = crate::store::series::Window::new(now, minutes);
    let received: Vec<(String, i64)> = sqlx::query_as(PER_MINUTE_RECEIVED)
        .bind(&w.from)
        .bind(&w.to)
        .fetch_all(pool)
        .await?;
    let finished: Vec<(String, String, i64)> = sqlx::query_as(PER_MINUTE_FINISHED)
        .bind(&w.from)
        .bind(&w.to)
        .fetch_all(pool)
        .await?;
    Ok(w.fill(&received, &finished))
}

/// The queue's depth.
pub(super) async fn queue_depth(pool: &PgPool) -> Result<QueueDepth, sqlx::Error> {
    let mut depth = QueueDepth::default();
    for r in sqlx::query(counts::PG_COUNT_QUEUED).fetch_all(pool).await? {
        depth.set(&r.try_get::<String, _>("status")?, r.try_get("n")?);
    }
    depth.oldest_due = oldest_due(pool).await?;
    Ok(depth)
}

/// Deletes one batch of finished events (their action runs and attempts go with them, by
/// the trigger of migration 0028).
pub(super) async fn purge_batch(pool: &PgPool, status: &str, before: &str, limit: usize) -> Result<u64, sqlx::Error> {
    // SKIP LOCKED: a row another session holds (a replay) is left for the next run.
    Ok(sqlx::query(concat!(
        "WITH doomed AS (SELECT id FROM events WHERE ",
        finished_rows!(),
        " AND status = $1 AND processed_at < $2 ORDER BY processed_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
         DELETE FROM events USING doomed WHERE events.id = doomed.id"
    ))
    .bind(status)
    .bind(before)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .execute(pool)
    .await?
    .rows_affected())
}
