//! Operator writes run by the SQLite writer thread: replay, cancel, bulk-replay chunks and
//! purge batches. Each is small (one row, or one bounded chunk), so it shares a group
//! commit with ingest without holding it up for long. Also the dashboard's per-minute
//! series, read from the reader pool.

use rusqlite::{OptionalExtension, Transaction, params};
use sqlx::sqlite::SqlitePool;

use super::Transition;
use crate::store::MinuteCounts;
use crate::store::series::Window;

/// Events received per minute: key (the first 16 characters of the timestamp), count.
const PER_MINUTE_RECEIVED: &str = "SELECT substr(received_at, 1, 16) AS m, COUNT(*) AS n FROM events \
     WHERE received_at >= ?1 AND received_at < ?2 GROUP BY m";

/// Events finished done or error per minute: status, key, count. The OR term repeats the
/// `events_finished` index's WHERE verbatim so SQLite may use it.
pub(super) const PER_MINUTE_FINISHED: &str = concat!(
    "SELECT status, substr(processed_at, 1, 16) AS m, COUNT(*) AS n FROM events WHERE ",
    super::finished_rows!(),
    " AND status IN ('done', 'error') AND processed_at >= ?1 AND processed_at < ?2 GROUP BY status, m"
);

/// Received and finished counts per minute of the window ending with `now`'s minute.
pub(super) async fn per_minute(
    pool: &SqlitePool,
    now: chrono::DateTime<chrono::Utc>,
    minutes: u32,
) -> Result<Vec<MinuteCounts>, sqlx::Error> {
    let w = Window::new(now, minutes);
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

/// The status of an event, if it exists.
fn status_of(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<Option<String>> {
    tx.prepare_cached("SELECT status FROM events WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()
}

/// What a single-row transition that changed nothing means.
fn refused(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<Transition> {
    Ok(match status_of(tx, id)? {
        Some(status) => Transition::Conflict(status),
        None => Transition::NotFound,
    })
}

/// Puts an event back to `pending` with a fresh attempt budget, unless it is processing.
pub(super) fn replay(tx: &Transaction<'_>, id: i64, force: bool, now: &str) -> rusqlite::Result<Transition> {
    let n = tx
        .prepare_cached(
            "UPDATE events SET status = 'pending', attempt_count = 0, next_attempt_at = ?1, last_error = NULL, \
             processed_at = NULL, lease_until = NULL, replay_force = ?3 WHERE id = ?2 AND status != 'processing'",
        )?
        .execute(params![now, id, i64::from(force)])?;
    if n == 1 {
        Ok(Transition::Applied)
    } else {
        refused(tx, id)
    }
}

/// Cancels an event an operator may cancel (`pending`, `retry`, `held`, `waiting`); one
/// with a place in flow control's lines gives it up ([`forget_flow`]).
pub(super) fn cancel(tx: &Transaction<'_>, id: i64, now: &str) -> rusqlite::Result<Transition> {
    let n = tx
        .prepare_cached(
            "UPDATE events SET status = 'cancelled', processed_at = ?1, lease_until = NULL \
             WHERE id = ?2 AND status IN ('pending', 'retry', 'held', 'waiting')",
        )?
        .execute(params![now, id])?;
    if n == 1 {
        forget_flow(tx, id, now)?;
        Ok(Transition::Applied)
    } else {
        refused(tx, id)
    }
}

/// Drops a cancelled event's waiting rows (CONTRACT §13) and the debounce window it held,
/// so that no event stays in line behind it, and makes due the oldest event waiting in each
/// line it left (admission looks at them again; one that still may not start waits again).
/// An event without a flow has no such rows: one indexed delete finds nothing.
fn forget_flow(tx: &Transaction<'_>, id: i64, now: &str) -> rusqlite::Result<()> {
    use crate::store::flow::sql as q;
    let left: Vec<(String, String, Option<String>, String)> = tx
        .prepare_cached("DELETE FROM flow_waits WHERE event_row_id = ?1 RETURNING action, flow_key, pool, blocked_on")?
        .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if left.iter().any(|(.., blocked_on)| blocked_on == "debounce") {
        tx.prepare_cached(
            "DELETE FROM flow_debounced WHERE EXISTS (SELECT 1 FROM flow_debounce d WHERE d.holder_row_id = ?1 \
             AND d.action = flow_debounced.action AND d.flow_key = flow_debounced.flow_key)",
        )?
        .execute(params![id])?;
        tx.prepare_cached("DELETE FROM flow_debounce WHERE holder_row_id = ?1")?
            .execute(params![id])?;
    }
    let sql = super::spend::sql;
    let mut wake = tx.prepare_cached(
        "UPDATE events SET status = 'pending', next_attempt_at = ?2 WHERE id = ?1 AND status = 'waiting'",
    )?;
    for (action, key, pool, _) in &left {
        let mut next = vec![
            tx.prepare_cached(&sql(q::KEY_WAKE))?
                .query_row(params![action, key], |r| r.get::<_, i64>(0))
                .optional()?,
            tx.prepare_cached(&sql(q::LIMIT_WAKE))?
                .query_row(params![action], |r| r.get::<_, i64>(0))
                .optional()?,
        ];
        if let Some(pool) = pool {
            next.push(
                tx.prepare_cached(&sql(q::POOL_WAKE))?
                    .query_row(params![pool], |r| r.get::<_, i64>(0))
                    .optional()?,
            );
        }
        for w in next.into_iter().flatten() {
            wake.execute(params![w, now])?;
        }
    }
    Ok(())
}

/// Replays a chunk of a bulk replay; each row is re-checked (not processing, still in
/// `status` when the filter named one), since it may have moved since it was selected.
pub(super) fn replay_ids(tx: &Transaction<'_>, ids: &[i64], status: Option<&str>, now: &str) -> rusqlite::Result<u64> {
    let mut stmt = tx.prepare_cached(
        "UPDATE events SET status = 'pending', attempt_count = 0, next_attempt_at = ?1, last_error = NULL, \
         processed_at = NULL, lease_until = NULL, replay_force = 0 \
         WHERE id = ?2 AND status != 'processing' AND (?3 IS NULL OR status = ?3)",
    )?;
    let mut n = 0;
    for id in ids {
        n += stmt.execute(params![now, id, status])? as u64;
    }
    Ok(n)
}

/// The ids of a purge batch: `status`, finished before `?2`, oldest first. The OR term
/// repeats the index's WHERE verbatim so SQLite uses `events_finished`.
pub(super) const PURGE_BATCH: &str = concat!(
    "SELECT id FROM events WHERE ",
    super::finished_rows!(),
    " AND status = ?1 AND processed_at < ?2 ORDER BY processed_at LIMIT ?3 + 0"
);

/// Deletes up to `limit` events of `status` finished before `before`, oldest first, with
/// their action runs.
pub(super) fn purge(tx: &Transaction<'_>, status: &str, before: &str, limit: usize) -> rusqlite::Result<u64> {
    let ids = tx
        .prepare_cached(PURGE_BATCH)?
        .query_map(params![status, before, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            r.get::<_, i64>(0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut runs = tx.prepare_cached("DELETE FROM action_runs WHERE event_row_id = ?1")?;
    let mut attempts = tx.prepare_cached("DELETE FROM event_attempts WHERE event_row_id = ?1")?;
    let mut events = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
    for id in &ids {
        runs.execute(params![id])?;
        attempts.execute(params![id])?;
        events.execute(params![id])?;
    }
    Ok(ids.len() as u64)
}
