//! Flow control on SQLite: [`FlowTx`] over the writer's transaction. The writer runs one
//! transaction at a time under SQLite's write lock, so admission is serialised across
//! every process on the file.

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction, params};

use super::spend::sql;
use crate::domain::EventStatus;
use crate::store::ClaimRef;
use crate::store::flow::sql as q;
use crate::store::flow::tx::{FlowTx, FreedSlot, PoolRow, WaitRow, Waiter, Window};
use crate::store::flow::{self, FlowAsk, FlowVerdict};

/// Runs a future whose every await completes at once (the methods below never suspend).
fn run_now<F: Future<Output = rusqlite::Result<T>>, T>(f: F) -> rusqlite::Result<T> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(rusqlite::Error::InvalidQuery),
    }
}

/// Flow statements on one writer transaction.
struct Tx<'a, 'c>(&'a Transaction<'c>);

impl Tx<'_, '_> {
    fn ids(&self, statement: &str, p: impl rusqlite::Params) -> rusqlite::Result<Vec<i64>> {
        let mut stmt = self.0.prepare_cached(&sql(statement))?;
        let rows = stmt.query_map(p, |r| r.get(0))?;
        rows.collect()
    }

    fn first(&self, statement: &str, p: impl rusqlite::Params) -> rusqlite::Result<Option<i64>> {
        self.0
            .prepare_cached(&sql(statement))?
            .query_row(p, |r| r.get(0))
            .optional()
    }

    fn count(&self, statement: &str, p: impl rusqlite::Params) -> rusqlite::Result<i64> {
        self.0.prepare_cached(&sql(statement))?.query_row(p, |r| r.get(0))
    }

    fn exec(&self, statement: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.0.prepare_cached(&sql(statement))?.execute(p)
    }
}

impl FlowTx for Tx<'_, '_> {
    type Error = rusqlite::Error;

    async fn claim_holds(&mut self, claim: ClaimRef) -> rusqlite::Result<bool> {
        Ok(self
            .first(
                "SELECT id FROM events WHERE id = $1 AND attempt_count = $2 AND status = 'processing'",
                params![claim.id, claim.attempt],
            )?
            .is_some())
    }

    async fn event_id(&mut self, row_id: i64) -> rusqlite::Result<Option<String>> {
        Ok(self
            .0
            .prepare_cached(&sql(q::EVENT_ID))?
            .query_row(params![row_id], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    async fn pool(&mut self, name: &str) -> rusqlite::Result<Option<PoolRow>> {
        self.0
            .prepare_cached(&sql(q::POOL))?
            .query_row(params![name], |r| {
                Ok(PoolRow {
                    limit: r.get(0)?,
                    paused_until: r.get(1)?,
                })
            })
            .optional()
    }

    async fn window(&mut self, action: &str, key: &str) -> rusqlite::Result<Option<Window>> {
        self.0
            .prepare_cached(&sql(q::WINDOW))?
            .query_row(params![action, key], |r| {
                Ok(Window {
                    holder: r.get(0)?,
                    first_at: r.get(1)?,
                    due_at: r.get(2)?,
                })
            })
            .optional()
    }

    async fn set_window(&mut self, action: &str, key: &str, w: &Window) -> rusqlite::Result<()> {
        self.exec(q::SET_WINDOW, params![action, key, w.holder, w.first_at, w.due_at])?;
        Ok(())
    }

    async fn close_window(&mut self, action: &str, key: &str, max: usize) -> rusqlite::Result<Vec<i64>> {
        let mut ids = self.ids(q::WINDOW_EVENTS, params![action, key, max as i64])?;
        ids.reverse();
        self.exec(q::DELETE_WINDOW_EVENTS, params![action, key])?;
        self.exec(q::DELETE_WINDOW, params![action, key])?;
        Ok(ids)
    }

    async fn add_to_window(&mut self, action: &str, key: &str, row_id: i64) -> rusqlite::Result<()> {
        self.exec(q::ADD_TO_WINDOW, params![action, key, row_id])?;
        Ok(())
    }

    async fn waiting_on(&mut self, row_id: i64, action: &str) -> rusqlite::Result<Option<String>> {
        self.0
            .prepare_cached(&sql(q::WAITING_ON))?
            .query_row(params![row_id, action], |r| r.get(0))
            .optional()
    }

    async fn key_runners(&mut self, action: &str, key: &str, except: i64) -> rusqlite::Result<Vec<(i64, Option<i64>)>> {
        let mut stmt = self.0.prepare_cached(&sql(q::KEY_RUNNERS))?;
        let rows = stmt.query_map(params![action, key, except], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    }

    async fn key_waiters(&mut self, action: &str, key: &str, except: i64) -> rusqlite::Result<Vec<i64>> {
        self.ids(q::KEY_WAITERS, params![action, key, except])
    }

    async fn oldest_waiter(&mut self, which: Waiter<'_>, before: Option<i64>) -> rusqlite::Result<Option<i64>> {
        match (which, before) {
            (Waiter::Key(a, k), Some(b)) => self.first(q::KEY_BEFORE, params![a, k, b]),
            (Waiter::Limit(a), Some(b)) => self.first(q::LIMIT_BEFORE, params![a, b]),
            (Waiter::Pool(p), Some(b)) => self.first(q::POOL_BEFORE, params![p, b]),
            (Waiter::Key(a, k), None) => self.first(q::KEY_WAKE, params![a, k]),
            (Waiter::Limit(a), None) => self.first(q::LIMIT_WAKE, params![a]),
            (Waiter::Pool(p), None) => self.first(q::POOL_WAKE, params![p]),
        }
    }

    async fn count_key(&mut self, action: &str, key: &str, except: i64) -> rusqlite::Result<i64> {
        self.count(q::COUNT_KEY, params![action, key, except])
    }

    async fn count_action(&mut self, action: &str, except: i64) -> rusqlite::Result<i64> {
        self.count(q::COUNT_ACTION, params![action, except])
    }

    async fn count_pool(&mut self, pool: &str, except: i64) -> rusqlite::Result<i64> {
        self.count(q::COUNT_POOL, params![pool, except])
    }

    async fn nth_start(&mut self, action: &str, key: &str, since: &str, n: u32) -> rusqlite::Result<Option<String>> {
        self.0
            .prepare_cached(&sql(q::NTH_START))?
            .query_row(params![action, key, since, i64::from(n) - 1], |r| r.get(0))
            .optional()
    }

    async fn insert_slot(&mut self, row_id: i64, run: &flow::FlowRun, now: &str) -> rusqlite::Result<()> {
        let limited = run.flow.limit.is_some();
        self.exec(
            q::INSERT_SLOT,
            params![row_id, run.action, run.key, run.flow.pool, now, limited],
        )?;
        Ok(())
    }

    async fn insert_start(&mut self, action: &str, key: &str, now: &str) -> rusqlite::Result<()> {
        self.exec(q::INSERT_START, params![action, key, now])?;
        Ok(())
    }

    async fn request_cancel(&mut self, holder: i64, action: &str, by: i64) -> rusqlite::Result<()> {
        self.exec(q::REQUEST_CANCEL, params![holder, action, by])?;
        Ok(())
    }

    async fn delete_slots(&mut self, row_id: i64) -> rusqlite::Result<Vec<FreedSlot>> {
        let mut stmt = self.0.prepare_cached(&sql(q::DELETE_SLOTS))?;
        let rows = stmt.query_map(params![row_id], |r| {
            Ok(FreedSlot {
                action: r.get(0)?,
                key: r.get(1)?,
                pool: r.get(2)?,
            })
        })?;
        rows.collect()
    }

    async fn delete_start(&mut self, action: &str, key: &str, now: &str) -> rusqlite::Result<()> {
        self.exec(q::DELETE_START, params![action, key, now])?;
        Ok(())
    }

    async fn delete_waits(&mut self, row_id: i64) -> rusqlite::Result<()> {
        self.exec(q::DELETE_WAITS, params![row_id])?;
        Ok(())
    }

    async fn end_event(
        &mut self,
        row_id: i64,
        claim: Option<(ClaimRef, &str, &str)>,
        status: EventStatus,
        result_json: &str,
        now: &str,
    ) -> rusqlite::Result<bool> {
        let changed = match claim {
            // Its attempt never ran a handler: given back, as for a wait.
            Some((c, provider, action)) => self.exec(
                "UPDATE events SET status = $1, result_json = $2, processed_at = $3, last_error = NULL, \
                 lease_until = NULL, attempt_count = attempt_count - 1, provider = $6, action = $7 \
                 WHERE id = $4 AND attempt_count = $5 AND status = 'processing'",
                params![status.as_str(), result_json, now, row_id, c.attempt, provider, action],
            )?,
            None => self.exec(
                "UPDATE events SET status = $1, result_json = $2, processed_at = $3, last_error = NULL, \
                 lease_until = NULL WHERE id = $4 AND status IN ('waiting', 'pending', 'retry', 'processing', 'held')",
                params![status.as_str(), result_json, now, row_id],
            )?,
        };
        if changed == 1 {
            self.exec(q::DELETE_WAITS, params![row_id])?;
        }
        Ok(changed == 1)
    }

    async fn wait_event(
        &mut self,
        claim: ClaimRef,
        row: &WaitRow<'_>,
        reason: &str,
        until: &str,
        now: &str,
    ) -> rusqlite::Result<bool> {
        let changed = self.exec(
            "UPDATE events SET status = 'waiting', attempt_count = attempt_count - 1, next_attempt_at = $1, \
             last_error = $2, lease_until = NULL, provider = $5, action = $6 \
             WHERE id = $3 AND attempt_count = $4 AND status = 'processing'",
            params![until, reason, claim.id, claim.attempt, row.provider, row.action],
        )?;
        if changed == 1 {
            self.exec(
                q::UPSERT_WAIT,
                params![claim.id, row.action, row.key, row.pool, row.blocked_on, now],
            )?;
        }
        Ok(changed == 1)
    }

    async fn wake(&mut self, row_id: i64, now: &str) -> rusqlite::Result<bool> {
        Ok(self.exec(
            "UPDATE events SET status = 'pending', next_attempt_at = $2 WHERE id = $1 AND status = 'waiting'",
            params![row_id, now],
        )? == 1)
    }
}

/// Admission of a claimed event (see [`flow::admit`]).
pub(super) fn admit(tx: &Transaction<'_>, ask: &FlowAsk, now: &str) -> rusqlite::Result<FlowVerdict> {
    run_now(flow::admit(&mut Tx(tx), ask, now))
}

/// Frees an event's slots and wakes who waits for them.
pub(super) fn release(tx: &Transaction<'_>, row_id: i64, now: &str) -> rusqlite::Result<u64> {
    run_now(flow::release(&mut Tx(tx), row_id, now))
}

/// Ends a claimed event whose run was cancelled, superseded by `by`.
pub(super) fn supersede_running(
    tx: &Transaction<'_>,
    claim: ClaimRef,
    action: &str,
    by: i64,
    now: &str,
) -> rusqlite::Result<bool> {
    let mut t = Tx(tx);
    run_now(async {
        let key: Option<String> =
            t.0.prepare_cached("SELECT flow_key FROM flow_slots WHERE event_row_id = ?1 AND action = ?2")?
                .query_row(params![claim.id, action], |r| r.get(0))
                .optional()?;
        let by_id = t.event_id(by).await?;
        let result = flow::ended_result(
            EventStatus::Superseded,
            action,
            key.as_deref().unwrap_or(""),
            by,
            by_id.as_deref(),
        );
        // The attempt ran (and was stopped): it counts.
        let changed = t.exec(
            "UPDATE events SET status = 'superseded', result_json = $1, processed_at = $2, last_error = NULL, \
             lease_until = NULL WHERE id = $3 AND attempt_count = $4 AND status = 'processing'",
            params![result, now, claim.id, claim.attempt],
        )?;
        if changed == 1 {
            t.exec(q::DELETE_WAITS, params![claim.id])?;
        }
        Ok(changed == 1)
    })
}

/// Pauses a pool; returns the end of the pause.
pub(super) fn pause(
    tx: &Transaction<'_>,
    pool: &str,
    retry_after: Option<Duration>,
    now: &str,
) -> rusqlite::Result<String> {
    let row: Option<(i64, Option<String>)> = tx
        .prepare_cached(&sql(q::POOL_PAUSE_MS))?
        .query_row(params![pool], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((pause_ms, paused_until)) = row else {
        return Ok(now.to_owned());
    };
    let (pause_ms, wait) = flow::next_pause(pause_ms, retry_after);
    let until = flow::later(paused_until.as_deref(), &flow::plus(now, wait));
    tx.prepare_cached(&sql(q::PAUSE_POOL))?
        .execute(params![pool, pause_ms, until])?;
    Ok(until)
}

/// Housekeeping (see [`crate::store::Store::flow_sweep`]).
pub(super) fn sweep(tx: &Transaction<'_>, tidy: bool, now: &str) -> rusqlite::Result<u64> {
    let orphans: Vec<i64> = {
        let mut stmt = tx.prepare_cached(
            "SELECT DISTINCT event_row_id FROM flow_slots WHERE event_row_id NOT IN \
             (SELECT id FROM events WHERE status = 'processing')",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut woken = 0;
    for id in orphans {
        woken += release(tx, id, now)?;
    }
    let t = Tx(tx);
    if tidy {
        t.exec(q::STALE_WAITS, [])?;
        t.exec(q::STALE_WINDOWS, [])?;
        t.exec(q::STALE_WINDOW_EVENTS, [])?;
        t.exec(q::PRUNE_STARTS, params![flow::starts_kept_after(now)])?;
    }
    woken += t.exec(
        "UPDATE events SET status = 'pending' WHERE status = 'waiting' AND next_attempt_at <= $1",
        params![now],
    )? as u64;
    Ok(woken)
}

/// Live slots, waits and pools.
pub(super) async fn state(pool: &sqlx::SqlitePool) -> Result<flow::FlowState, crate::store::StoreError> {
    use sqlx::AssertSqlSafe;
    let running = sqlx::query_as(AssertSqlSafe(sql(q::STATE_RUNNING)))
        .fetch_all(pool)
        .await?;
    let waiting = sqlx::query_as(AssertSqlSafe(sql(q::STATE_WAITING)))
        .fetch_all(pool)
        .await?;
    let pools: Vec<(String, i64, i64, Option<String>)> = sqlx::query_as(AssertSqlSafe(sql(q::STATE_POOLS)))
        .fetch_all(pool)
        .await?;
    Ok(flow::FlowState::from_rows(running, waiting, pools))
}
