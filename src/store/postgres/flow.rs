//! Flow control on PostgreSQL: [`FlowTx`] over a transaction that first takes the advisory
//! locks of every action and pool it will count (in one global order, so two admissions
//! never wait on each other in a circle). A release takes the same locks, so a slot cannot
//! be freed between an admission's count and its waiting row: no wake-up is lost.
//!
//! A claimed event's queue row is its claim (migration 0020): a waiting or ended event
//! loses it, a woken one gets a new one.

use std::time::Duration;

use sqlx::{PgPool, Postgres, Row, Transaction};

use super::CHANNEL;
use super::retry::retry;
use crate::domain::EventStatus;
use crate::store::flow::sql as q;
use crate::store::flow::tx::{FlowTx, FreedSlot, PoolRow, WaitRow, Waiter, Window};
use crate::store::flow::{self, FlowAsk, FlowVerdict};
use crate::store::{ClaimRef, StoreError};

/// Flow statements on one transaction; counts the events it woke (to NOTIFY at the end).
struct Tx {
    tx: Transaction<'static, Postgres>,
    woken: u64,
}

/// The advisory lock key of an action or a pool (`hashtextextended` is stable across
/// servers and versions ≥ 11).
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7235))";

/// The lock name of an action's action-wide lines (its `limit`): taken only by flows that
/// have one, so that the keys of an action without a limit admit in parallel.
pub(super) fn action_lock(action: &str) -> String {
    format!("flow:action:{action}")
}

/// The lock name of one key's line in an action: every admission takes it.
pub(super) fn key_lock(action: &str, key: &str) -> String {
    format!("flow:key:{action}\u{1f}{key}")
}

/// The lock name of a pool's line.
pub(super) fn pool_lock(pool: &str) -> String {
    format!("flow:pool:{pool}")
}

/// Takes the advisory locks `names` in the one global order (sorted), for the transaction.
pub(super) async fn take_locks(conn: &mut sqlx::PgConnection, mut names: Vec<String>) -> Result<(), sqlx::Error> {
    names.sort();
    names.dedup();
    for name in names {
        sqlx::query(LOCK).bind(name).execute(&mut *conn).await?;
    }
    Ok(())
}

impl Tx {
    async fn begin(pool: &PgPool, names: Vec<String>) -> Result<Tx, sqlx::Error> {
        let mut tx = pool.begin().await?;
        take_locks(&mut tx, names).await?;
        Ok(Tx { tx, woken: 0 })
    }

    async fn commit(mut self) -> Result<(), sqlx::Error> {
        if self.woken > 0 {
            sqlx::query("SELECT pg_notify($1, current_schema())")
                .bind(CHANNEL)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await
    }

    async fn first(&mut self, sql: &'static str, binds: Binds<'_>) -> Result<Option<i64>, sqlx::Error> {
        binds.apply(sqlx::query_scalar(sql)).fetch_optional(&mut *self.tx).await
    }

    async fn exec(&mut self, sql: &'static str, binds: Binds<'_>) -> Result<u64, sqlx::Error> {
        Ok(binds
            .apply_q(sqlx::query(sql))
            .execute(&mut *self.tx)
            .await?
            .rows_affected())
    }
}

/// The binds of a statement, in order.
struct Binds<'a>(Vec<Bind<'a>>);

enum Bind<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
}

impl<'a> Binds<'a> {
    fn apply<O>(
        self,
        mut q: sqlx::query::QueryScalar<'a, Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<'a, Postgres, O, sqlx::postgres::PgArguments> {
        for b in self.0 {
            q = match b {
                Bind::Text(t) => q.bind(t),
                Bind::OptText(t) => q.bind(t),
                Bind::Int(i) => q.bind(i),
            };
        }
        q
    }

    fn apply_q(
        self,
        mut q: sqlx::query::Query<'a, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'a, Postgres, sqlx::postgres::PgArguments> {
        for b in self.0 {
            q = match b {
                Bind::Text(t) => q.bind(t),
                Bind::OptText(t) => q.bind(t),
                Bind::Int(i) => q.bind(i),
            };
        }
        q
    }
}

use Bind::{Int, OptText, Text};

impl FlowTx for Tx {
    type Error = sqlx::Error;

    async fn claim_holds(&mut self, claim: ClaimRef) -> Result<bool, sqlx::Error> {
        Ok(self
            .first(
                "SELECT event_row_id FROM event_queue WHERE event_row_id = $1 AND attempt = $2 \
                 AND leased_until IS NOT NULL FOR UPDATE",
                Binds(vec![Int(claim.id), Int(claim.attempt)]),
            )
            .await?
            .is_some())
    }

    async fn event_id(&mut self, row_id: i64) -> Result<Option<String>, sqlx::Error> {
        let id: Option<Option<String>> = sqlx::query_scalar(q::EVENT_ID)
            .bind(row_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(id.flatten())
    }

    async fn pool(&mut self, name: &str) -> Result<Option<PoolRow>, sqlx::Error> {
        let row = sqlx::query(q::POOL).bind(name).fetch_optional(&mut *self.tx).await?;
        row.map(|r| {
            Ok(PoolRow {
                limit: r.try_get(0)?,
                paused_until: r.try_get(1)?,
            })
        })
        .transpose()
    }

    async fn window(&mut self, action: &str, key: &str) -> Result<Option<Window>, sqlx::Error> {
        let row = sqlx::query(q::WINDOW)
            .bind(action)
            .bind(key)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| {
            Ok(Window {
                holder: r.try_get(0)?,
                first_at: r.try_get(1)?,
                due_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn set_window(&mut self, action: &str, key: &str, w: &Window) -> Result<(), sqlx::Error> {
        self.exec(
            q::SET_WINDOW,
            Binds(vec![
                Text(action),
                Text(key),
                Int(w.holder),
                Text(&w.first_at),
                Text(&w.due_at),
            ]),
        )
        .await?;
        Ok(())
    }

    async fn close_window(&mut self, action: &str, key: &str, max: usize) -> Result<Vec<i64>, sqlx::Error> {
        let mut ids: Vec<i64> = sqlx::query_scalar(q::WINDOW_EVENTS)
            .bind(action)
            .bind(key)
            .bind(max as i64)
            .fetch_all(&mut *self.tx)
            .await?;
        ids.reverse();
        self.exec(q::DELETE_WINDOW_EVENTS, Binds(vec![Text(action), Text(key)]))
            .await?;
        self.exec(q::DELETE_WINDOW, Binds(vec![Text(action), Text(key)]))
            .await?;
        Ok(ids)
    }

    async fn add_to_window(&mut self, action: &str, key: &str, row_id: i64) -> Result<(), sqlx::Error> {
        self.exec(q::ADD_TO_WINDOW, Binds(vec![Text(action), Text(key), Int(row_id)]))
            .await?;
        Ok(())
    }

    async fn waiting_on(&mut self, row_id: i64, action: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(q::WAITING_ON)
            .bind(row_id)
            .bind(action)
            .fetch_optional(&mut *self.tx)
            .await
    }

    async fn key_runners(
        &mut self,
        action: &str,
        key: &str,
        except: i64,
    ) -> Result<Vec<(i64, Option<i64>)>, sqlx::Error> {
        sqlx::query_as(q::KEY_RUNNERS)
            .bind(action)
            .bind(key)
            .bind(except)
            .fetch_all(&mut *self.tx)
            .await
    }

    async fn key_waiters(&mut self, action: &str, key: &str, except: i64) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(q::KEY_WAITERS)
            .bind(action)
            .bind(key)
            .bind(except)
            .fetch_all(&mut *self.tx)
            .await
    }

    async fn oldest_waiter(&mut self, which: Waiter<'_>, before: Option<i64>) -> Result<Option<i64>, sqlx::Error> {
        match (which, before) {
            (Waiter::Key(a, k), Some(b)) => self.first(q::KEY_BEFORE, Binds(vec![Text(a), Text(k), Int(b)])).await,
            (Waiter::Limit(a), Some(b)) => self.first(q::LIMIT_BEFORE, Binds(vec![Text(a), Int(b)])).await,
            (Waiter::Pool(p), Some(b)) => self.first(q::POOL_BEFORE, Binds(vec![Text(p), Int(b)])).await,
            (Waiter::Key(a, k), None) => self.first(q::KEY_WAKE, Binds(vec![Text(a), Text(k)])).await,
            (Waiter::Limit(a), None) => self.first(q::LIMIT_WAKE, Binds(vec![Text(a)])).await,
            (Waiter::Pool(p), None) => self.first(q::POOL_WAKE, Binds(vec![Text(p)])).await,
        }
    }

    async fn count_key(&mut self, action: &str, key: &str, except: i64) -> Result<i64, sqlx::Error> {
        Ok(self
            .first(q::COUNT_KEY, Binds(vec![Text(action), Text(key), Int(except)]))
            .await?
            .unwrap_or(0))
    }

    async fn count_action(&mut self, action: &str, except: i64) -> Result<i64, sqlx::Error> {
        Ok(self
            .first(q::COUNT_ACTION, Binds(vec![Text(action), Int(except)]))
            .await?
            .unwrap_or(0))
    }

    async fn count_pool(&mut self, pool: &str, except: i64) -> Result<i64, sqlx::Error> {
        Ok(self
            .first(q::COUNT_POOL, Binds(vec![Text(pool), Int(except)]))
            .await?
            .unwrap_or(0))
    }

    async fn nth_start(&mut self, action: &str, key: &str, since: &str, n: u32) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(q::NTH_START)
            .bind(action)
            .bind(key)
            .bind(since)
            .bind(i64::from(n) - 1)
            .fetch_optional(&mut *self.tx)
            .await
    }

    async fn insert_slot(&mut self, row_id: i64, run: &flow::FlowRun, now: &str) -> Result<(), sqlx::Error> {
        sqlx::query(q::INSERT_SLOT)
            .bind(row_id)
            .bind(&run.action)
            .bind(&run.key)
            .bind(run.flow.pool.as_deref())
            .bind(now)
            .bind(run.flow.limit.is_some())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    async fn insert_start(&mut self, action: &str, key: &str, now: &str) -> Result<(), sqlx::Error> {
        self.exec(q::INSERT_START, Binds(vec![Text(action), Text(key), Text(now)]))
            .await?;
        Ok(())
    }

    async fn request_cancel(&mut self, holder: i64, action: &str, by: i64) -> Result<(), sqlx::Error> {
        self.exec(q::REQUEST_CANCEL, Binds(vec![Int(holder), Text(action), Int(by)]))
            .await?;
        Ok(())
    }

    async fn delete_slots(&mut self, row_id: i64) -> Result<Vec<FreedSlot>, sqlx::Error> {
        let rows = sqlx::query(q::DELETE_SLOTS)
            .bind(row_id)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(FreedSlot {
                    action: r.try_get(0)?,
                    key: r.try_get(1)?,
                    pool: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn delete_start(&mut self, action: &str, key: &str, now: &str) -> Result<(), sqlx::Error> {
        self.exec(q::DELETE_START, Binds(vec![Text(action), Text(key), Text(now)]))
            .await?;
        Ok(())
    }

    async fn delete_waits(&mut self, row_id: i64) -> Result<(), sqlx::Error> {
        self.exec(q::DELETE_WAITS, Binds(vec![Int(row_id)])).await?;
        Ok(())
    }

    async fn end_event(
        &mut self,
        row_id: i64,
        claim: Option<(ClaimRef, &str, &str)>,
        status: EventStatus,
        result_json: &str,
        now: &str,
    ) -> Result<bool, sqlx::Error> {
        let changed = match claim {
            Some((c, provider, action)) => {
                self.exec(
                    "WITH claim AS (DELETE FROM event_queue WHERE event_row_id = $4 AND attempt = $5 \
                       AND leased_until IS NOT NULL RETURNING event_row_id) \
                     UPDATE events SET status = $1, result_json = $2, processed_at = $3, last_error = NULL, \
                       lease_until = NULL, provider = $6, action = $7 WHERE id = (SELECT event_row_id FROM claim)",
                    Binds(vec![
                        Text(status.as_str()),
                        Text(result_json),
                        Text(now),
                        Int(row_id),
                        Int(c.attempt),
                        Text(provider),
                        Text(action),
                    ]),
                )
                .await?
            }
            None => {
                self.exec(
                    "WITH q AS (DELETE FROM event_queue WHERE event_row_id = $4) \
                     UPDATE events SET status = $1, result_json = $2, processed_at = $3, last_error = NULL, \
                       lease_until = NULL WHERE id = $4 AND status IN ('waiting', 'pending', 'retry', 'held')",
                    Binds(vec![Text(status.as_str()), Text(result_json), Text(now), Int(row_id)]),
                )
                .await?
            }
        };
        if changed == 1 {
            self.exec(q::DELETE_WAITS, Binds(vec![Int(row_id)])).await?;
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
    ) -> Result<bool, sqlx::Error> {
        let changed = self
            .exec(
                "WITH claim AS (DELETE FROM event_queue WHERE event_row_id = $3 AND attempt = $4 \
                   AND leased_until IS NOT NULL RETURNING event_row_id) \
                 UPDATE events SET status = 'waiting', next_attempt_at = $1, last_error = $2, lease_until = NULL, \
                   provider = $5, action = $6 WHERE id = (SELECT event_row_id FROM claim)",
                Binds(vec![
                    Text(until),
                    Text(reason),
                    Int(claim.id),
                    Int(claim.attempt),
                    Text(row.provider),
                    Text(row.action),
                ]),
            )
            .await?;
        if changed == 1 {
            self.exec(
                q::UPSERT_WAIT,
                Binds(vec![
                    Int(claim.id),
                    Text(row.action),
                    Text(row.key),
                    OptText(row.pool),
                    Text(row.blocked_on),
                    Text(now),
                ]),
            )
            .await?;
        }
        Ok(changed == 1)
    }

    async fn wake(&mut self, row_id: i64, now: &str) -> Result<bool, sqlx::Error> {
        let woke = self
            .exec(
                "WITH w AS (UPDATE events SET status = 'pending', next_attempt_at = $2 \
                   WHERE id = $1 AND status = 'waiting' RETURNING id, attempt_count) \
                 INSERT INTO event_queue (event_row_id, run_at, attempt) \
                 SELECT id, $2, attempt_count FROM w ON CONFLICT (event_row_id) DO NOTHING",
                Binds(vec![Int(row_id), Text(now)]),
            )
            .await?
            == 1;
        self.woken += u64::from(woke);
        Ok(woke)
    }
}

/// The lock names of an admission: each run's key, its action when it has a limit, its pool.
fn lock_names(ask: &FlowAsk) -> Vec<String> {
    let mut names = Vec::new();
    for run in &ask.runs {
        names.push(key_lock(&run.action, &run.key));
        if run.flow.limit.is_some() {
            names.push(action_lock(&run.action));
        }
        if let Some(p) = &run.flow.pool {
            names.push(pool_lock(p));
        }
    }
    names
}

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
