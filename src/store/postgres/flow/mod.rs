//! Flow control on PostgreSQL: [`FlowTx`](crate::store::flow::tx::FlowTx) over a transaction that first takes the advisory
//! locks of every action and pool it will count (in one global order, so two admissions
//! never wait on each other in a circle). A release takes the same locks, so a slot cannot
//! be freed between an admission's count and its waiting row: no wake-up is lost.
//!
//! A claimed event's queue row is its claim (migration 0020): a waiting or ended event
//! loses it, a woken one gets a new one.

mod locks;
mod tx;

use std::time::Duration;

use sqlx::PgPool;

use super::retry::retry;
use crate::domain::EventStatus;
use crate::store::flow::sql as q;
use crate::store::flow::tx::FlowTx;
use crate::store::flow::{self, FlowAsk, FlowVerdict};
use crate::store::{ClaimRef, StoreError};
use locks::lock_names;
pub(super) use locks::{action_lock, key_lock, pool_lock, take_locks};
use tx::{Binds, Int, Text, Tx};

/// Admission of a claimed event.
pub(super) async fn admit(pool: &PgPool, ask: FlowAsk) -> Result<FlowVerdict, StoreError> {
    Ok(retry("flow admission", || async {
        let mut tx = Tx::begin(pool, lock_names(&ask)).await?;
        let verdict = flow::admit(&mut tx, &ask, &crate::time::now()).await?;
        tx.commit().await?;
        Ok(verdict)
    })
    .await?)
}

/// The lock names of the slots an event holds: as its admission took them.
async fn slot_locks(pool: &PgPool, row_id: i64) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String, String, Option<String>, bool)> =
        sqlx::query_as("SELECT action, flow_key, pool, limited FROM flow_slots WHERE event_row_id = $1")
            .bind(row_id)
            .fetch_all(pool)
            .await?;
    let mut names = Vec::new();
    for (action, key, p, limited) in rows {
        names.push(key_lock(&action, &key));
        if limited {
            names.push(action_lock(&action));
        }
        names.extend(p.as_deref().map(pool_lock));
    }
    Ok(names)
}

async fn release_once(pool: &PgPool, row_id: i64) -> Result<u64, sqlx::Error> {
    let names = slot_locks(pool, row_id).await?;
    if names.is_empty() {
        return Ok(0);
    }
    let mut tx = Tx::begin(pool, names).await?;
    let woken = flow::release(&mut tx, row_id, &crate::time::now()).await?;
    tx.commit().await?;
    Ok(woken)
}

/// Frees an event's slots and wakes who waits for them.
pub(super) async fn release(pool: &PgPool, row_id: i64) -> Result<u64, StoreError> {
    Ok(retry("flow release", || release_once(pool, row_id)).await?)
}

/// Ends a claimed event whose run was cancelled, superseded by `by`.
pub(super) async fn supersede_running(
    pool: &PgPool,
    claim: ClaimRef,
    action: &str,
    by: i64,
) -> Result<bool, StoreError> {
    Ok(retry("flow supersede", || async {
        let key: Option<String> =
            sqlx::query_scalar("SELECT flow_key FROM flow_slots WHERE event_row_id = $1 AND action = $2")
                .bind(claim.id)
                .bind(action)
                .fetch_optional(pool)
                .await?;
        let mut tx = Tx::begin(pool, vec![key_lock(action, key.as_deref().unwrap_or(""))]).await?;
        let by_id = tx.event_id(by).await?;
        let result = flow::ended_result(
            EventStatus::Superseded,
            action,
            key.as_deref().unwrap_or(""),
            by,
            by_id.as_deref(),
        );
        let now = crate::time::now();
        // The attempt ran (and was stopped): it counts, as a finish counts it.
        let changed = tx
            .exec(
                "WITH claim AS (DELETE FROM event_queue WHERE event_row_id = $3 AND attempt = $4 \
                   AND leased_until IS NOT NULL RETURNING event_row_id, attempt) \
                 UPDATE events SET status = 'superseded', result_json = $1, processed_at = $2, last_error = NULL, \
                   lease_until = NULL, attempt_count = (SELECT attempt FROM claim) \
                 WHERE id = (SELECT event_row_id FROM claim)",
                Binds(vec![Text(&result), Text(&now), Int(claim.id), Int(claim.attempt)]),
            )
            .await?;
        if changed == 1 {
            tx.delete_waits(claim.id).await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    })
    .await?)
}

/// Pauses a pool; returns the end of the pause.
pub(super) async fn pause(pool: &PgPool, name: &str, retry_after: Option<Duration>) -> Result<String, StoreError> {
    Ok(retry("flow pause", || async {
        let mut tx = Tx::begin(pool, vec![pool_lock(name)]).await?;
        let now = crate::time::now();
        let row: Option<(i64, Option<String>)> = sqlx::query_as(q::POOL_PAUSE_MS)
            .bind(name)
            .fetch_optional(&mut *tx.tx)
            .await?;
        let Some((pause_ms, paused_until)) = row else {
            return Ok(now);
        };
        let (pause_ms, wait) = flow::next_pause(pause_ms, retry_after);
        let until = flow::later(paused_until.as_deref(), &flow::plus(&now, wait));
        sqlx::query(q::PAUSE_POOL)
            .bind(name)
            .bind(pause_ms)
            .bind(&until)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(until)
    })
    .await?)
}

/// Housekeeping (see [`crate::store::Store::flow_sweep`]).
pub(super) async fn sweep(pool: &PgPool, tidy: bool) -> Result<u64, StoreError> {
    // Slots of events no longer claimed: their process died (or stopped) mid-run.
    let orphans: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT s.event_row_id FROM flow_slots s WHERE NOT EXISTS (SELECT 1 FROM event_queue q \
         WHERE q.event_row_id = s.event_row_id AND q.leased_until IS NOT NULL)",
    )
    .fetch_all(pool)
    .await?;
    let mut woken = 0;
    for id in orphans {
        woken += release(pool, id).await?;
    }
    let now = crate::time::now();
    if tidy {
        for statement in [q::STALE_WAITS, q::STALE_WINDOWS, q::STALE_WINDOW_EVENTS] {
            sqlx::query(statement).execute(pool).await?;
        }
        sqlx::query(q::PRUNE_STARTS)
            .bind(flow::starts_kept_after(&now))
            .execute(pool)
            .await?;
    }
    let due: i64 = sqlx::query_scalar(
        "WITH released AS (UPDATE events SET status = 'pending' WHERE status = 'waiting' AND next_attempt_at <= $1 \
           RETURNING id, next_attempt_at, attempt_count), \
         queued AS (INSERT INTO event_queue (event_row_id, run_at, attempt) \
           SELECT id, next_attempt_at, attempt_count FROM released ON CONFLICT (event_row_id) DO NOTHING) \
         SELECT count(*) FROM released",
    )
    .bind(&now)
    .fetch_one(pool)
    .await?;
    Ok(woken + u64::try_from(due).unwrap_or(0))
}

/// Live slots, waits and pools.
pub(super) async fn state(pool: &PgPool) -> Result<flow::FlowState, StoreError> {
    let running = sqlx::query_as(q::STATE_RUNNING).fetch_all(pool).await?;
    let waiting = sqlx::query_as(q::STATE_WAITING).fetch_all(pool).await?;
    let pools: Vec<(String, i64, i64, Option<String>)> = sqlx::query_as(q::STATE_POOLS).fetch_all(pool).await?;
    Ok(flow::FlowState::from_rows(running, waiting, pools))
}
