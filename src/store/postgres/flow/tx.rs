//! [`FlowTx`] on PostgreSQL: flow control's statements on one transaction that holds the
//! advisory locks of everything it counts ([`super::locks`]).

use sqlx::{PgPool, Postgres, Row, Transaction};

use super::locks::take_locks;
use crate::domain::EventStatus;
use crate::store::ClaimRef;
use crate::store::flow::tx::{FlowTx, FreedSlot, PoolRow, WaitRow, Waiter, Window};
use crate::store::flow::{self, sql as q};
use crate::store::postgres::CHANNEL;

/// Flow statements on one transaction; counts the events it woke (to NOTIFY at the end).
pub(super) struct Tx {
    pub(super) tx: Transaction<'static, Postgres>,
    woken: u64,
}

impl Tx {
    pub(super) async fn begin(pool: &PgPool, names: Vec<String>) -> Result<Tx, sqlx::Error> {
        let mut tx = pool.begin().await?;
        take_locks(&mut tx, names).await?;
        Ok(Tx { tx, woken: 0 })
    }

    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        if self.woken > 0 {
            sqlx::query("SELECT pg_notify($1, current_schema())")
                .bind(CHANNEL)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await
    }

    pub(super) async fn first(&mut self, sql: &'static str, binds: Binds<'_>) -> Result<Option<i64>, sqlx::Error> {
        binds.apply(sqlx::query_scalar(sql)).fetch_optional(&mut *self.tx).await
    }

    pub(super) async fn exec(&mut self, sql: &'static str, binds: Binds<'_>) -> Result<u64, sqlx::Error> {
        Ok(binds
            .apply_q(sqlx::query(sql))
            .execute(&mut *self.tx)
            .await?
            .rows_affected())
    }
}

/// The binds of a statement, in order.
pub(super) struct Binds<'a>(pub(super) Vec<Bind<'a>>);

pub(super) enum Bind<'a> {
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

pub(super) use Bind::{Int, OptText, Text};

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
