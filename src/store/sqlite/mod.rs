//! The embedded SQLite backend.
//!
//! Writes go to the writer thread (`writer`): group commit, a reply only
//! after `COMMIT`. Reads use a separate sqlx pool; WAL lets them run beside the writer.

mod admin;
mod attempts;
mod checkpoint;
mod claim;
mod enqueue;
mod file;
mod finish;
mod flow;
mod migrations;
#[cfg(test)]
mod plans;
mod read;
mod schedules;
mod sessions;
mod spend;
mod writer;

use std::path::Path;
use std::sync::PoisonError;
use std::time::Duration;

use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::{mpsc, oneshot};

use super::query::{self, Dialect};
use super::*;
use writer::{Op, OpResult, WriteOp};

pub(crate) use file::{check_existing, prepare};

/// The WHERE of the `events_finished` index (migrations 0012, 0031), which a query repeats
/// verbatim so that SQLite sees the index applies.
macro_rules! finished_rows {
    () => {
        "(status = 'done' OR status = 'error' OR status = 'cancelled' OR status = 'skipped' OR status = 'superseded')"
    };
}
pub(crate) use finished_rows;

/// The SQLite store.
pub struct SqliteStore {
    writer: mpsc::Sender<WriteOp>,
    read: SqlitePool,
    /// The routing version read by the last claim that returned events, until asked for:
    /// the worker checks the version right after such a claim, and this spares that check
    /// a second trip to the writer thread (~0.1 ms of an idle queue's webhook → done).
    claimed_version: std::sync::Mutex<Option<i64>>,
}

impl SqliteStore {
    /// Opens an existing switchyard database for commands that only read: a missing file,
    /// or one without switchyard's tables, is an error naming the path; nothing is created.
    pub async fn open_existing(
        path: &Path,
        synchronous: crate::domain::SqliteSynchronous,
    ) -> Result<SqliteStore, StoreError> {
        check_existing(path).await?;
        SqliteStore::open(path, synchronous).await
    }

    /// Opens (creating if needed) the database file and migrates it.
    pub async fn open(path: &Path, synchronous: crate::domain::SqliteSynchronous) -> Result<SqliteStore, StoreError> {
        let options = prepare(path, synchronous).await?;
        let writer = writer::start(path, synchronous.as_str())?;

        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options)
            .await?;

        Ok(SqliteStore {
            writer,
            read,
            claimed_version: std::sync::Mutex::default(),
        })
    }

    async fn submit(&self, op: Op) -> Result<OpResult, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(WriteOp { op, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// The writer answered a request with another request's kind of result (a bug).
fn wrong_result() -> StoreError {
    StoreError::Config("internal error: the writer answered with the wrong result kind".into())
}

macro_rules! expect {
    ($fut:expr, $variant:ident) => {
        match $fut.await? {
            OpResult::$variant(v) => Ok(v),
            _ => Err(wrong_result()),
        }
    };
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn enqueue(&self, event: NewEvent) -> StoreFuture<'_, Enqueued> {
        Box::pin(async move { expect!(self.submit(Op::Enqueue(event)), Enqueued) })
    }

    fn claim(&self, limit: usize, lease: Duration) -> StoreFuture<'_, Vec<ClaimedEvent>> {
        Box::pin(async move {
            match self.submit(Op::Claim { limit, lease }).await? {
                OpResult::Claimed(events, version) => {
                    if !events.is_empty() {
                        *self.claimed_version.lock().unwrap_or_else(PoisonError::into_inner) = Some(version);
                    }
                    Ok(events)
                }
                _ => Err(wrong_result()),
            }
        })
    }

    fn renew(&self, claims: Vec<ClaimRef>, lease: Duration) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.submit(Op::Renew { claims, lease }).await?;
            Ok(())
        })
    }

    fn finish(&self, finish: Finish) -> StoreFuture<'_, bool> {
        Box::pin(async move { expect!(self.submit(Op::Finish(Box::new(finish))), Bool) })
    }

    fn finish_many(&self, finishes: Vec<Finish>) -> StoreFuture<'_, Vec<bool>> {
        Box::pin(async move { expect!(self.submit(Op::FinishMany(finishes)), Bools) })
    }

    fn release(&self, claims: Vec<ClaimRef>) -> StoreFuture<'_, u64> {
        Box::pin(async move { expect!(self.submit(Op::Release(claims)), Count) })
    }

    fn reclaim_expired(&self, max_attempts: u32) -> StoreFuture<'_, Vec<Reclaimed>> {
        Box::pin(async move { expect!(self.submit(Op::Reclaim { max_attempts }), Reclaimed) })
    }

    fn start_action_run(&self, run: ActionRunRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.submit(Op::StartRun(Box::new(run))).await?;
            Ok(())
        })
    }

    fn action_run(&self, event_row_id: i64, action: &str) -> StoreFuture<'_, Option<ActionRunRow>> {
        let action = action.to_string();
        Box::pin(async move { read::action_run(&self.read, event_row_id, &action).await })
    }

    fn event(&self, row_id: i64) -> StoreFuture<'_, Option<EventRow>> {
        Box::pin(read::event(&self.read, row_id))
    }

    fn action_runs(&self, event_row_id: i64) -> StoreFuture<'_, Vec<ActionRunRow>> {
        Box::pin(read::action_runs(&self.read, event_row_id))
    }

    fn attempts(&self, event_row_id: i64) -> StoreFuture<'_, Vec<AttemptRow>> {
        Box::pin(read::attempts(&self.read, event_row_id))
    }

    fn list_page(&self, filter: EventFilter, cursor: Option<Cursor>, limit: u32) -> StoreFuture<'_, EventPage> {
        Box::pin(read::list_page(&self.read, filter, cursor, limit))
    }

    fn stats(&self) -> StoreFuture<'_, Stats> {
        Box::pin(read::stats(&self.read))
    }

    fn queue_depth(&self) -> StoreFuture<'_, QueueDepth> {
        Box::pin(read::queue_depth(&self.read))
    }

    fn routing_tables(&self) -> StoreFuture<'_, RoutingTables> {
        Box::pin(read::routing_tables(&self.read))
    }

    fn mapping(&self, provider: &str) -> StoreFuture<'_, Option<Mapping>> {
        let provider = provider.to_string();
        Box::pin(async move { read::mapping(&self.read, &provider).await })
    }

    fn rules(&self, provider: &str) -> StoreFuture<'_, Vec<Rule>> {
        let provider = provider.to_string();
        Box::pin(async move { read::rules(&self.read, &provider).await })
    }

    fn replay(&self, row_id: i64, force: bool) -> StoreFuture<'_, Transition> {
        Box::pin(async move { expect!(self.submit(Op::Replay { id: row_id, force }), Transition) })
    }

    fn replay_matching(&self, filter: EventFilter) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut c = filter.clause(Dialect::Sqlite);
            c.and(Dialect::Sqlite, "status != 'processing'", vec![]);
            let sql = format!("SELECT id FROM events {} ORDER BY id", c.sql);
            let ids: Vec<i64> = query::bind_all(sqlx::query(AssertSqlSafe(sql)), &c.binds)
                .fetch_all(&self.read)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<Result<_, _>>()?;
            let mut replayed = 0;
            for chunk in ids.chunks(query::REPLAY_CHUNK) {
                let op = Op::ReplayIds {
                    ids: chunk.to_vec(),
                    status: filter.status.clone(),
                };
                replayed += expect!(self.submit(op), Count)?;
            }
            Ok(replayed)
        })
    }

    fn cancel(&self, row_id: i64) -> StoreFuture<'_, Transition> {
        Box::pin(async move { expect!(self.submit(Op::Cancel(row_id)), Transition) })
    }

    fn per_minute(&self, now: chrono::DateTime<chrono::Utc>, minutes: u32) -> StoreFuture<'_, Vec<MinuteCounts>> {
        Box::pin(async move { Ok(admin::per_minute(&self.read, now, minutes).await?) })
    }

    fn purge_batch(&self, status: crate::domain::EventStatus, before: &str, limit: usize) -> StoreFuture<'_, u64> {
        let op = Op::Purge {
            status: status.to_string(),
            before: before.to_string(),
            limit,
        };
        Box::pin(async move { expect!(self.submit(op), Count) })
    }

    fn record_usage(&self, record: UsageRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.submit(Op::RecordUsage(Box::new(record))).await?;
            Ok(())
        })
    }

    fn run_usage(&self, event_row_id: i64) -> StoreFuture<'_, Vec<RunUsage>> {
        Box::pin(spend::run_usage(&self.read, event_row_id))
    }

    fn transcript(&self, event_row_id: i64, run_id: i64) -> StoreFuture<'_, Option<Option<String>>> {
        Box::pin(spend::transcript(&self.read, event_row_id, run_id))
    }

    fn spend_cells(&self, since: String) -> StoreFuture<'_, Vec<SpendCell>> {
        Box::pin(async move { spend::cells(&self.read, &since).await })
    }

    fn top_runs(&self, since: String, limit: u32) -> StoreFuture<'_, Vec<TopRun>> {
        Box::pin(async move { spend::top(&self.read, &since, limit).await })
    }

    fn budget(&self, action: &str) -> StoreFuture<'_, Option<crate::domain::Budget>> {
        let action = action.to_owned();
        Box::pin(async move { spend::budget(&self.read, &action).await })
    }

    fn budgets(&self) -> StoreFuture<'_, Vec<crate::domain::ActionBudget>> {
        Box::pin(spend::budgets(&self.read))
    }

    fn spent_since(&self, since: String, action: Option<String>) -> StoreFuture<'_, f64> {
        Box::pin(async move { spend::spent(&self.read, &since, action.as_deref()).await })
    }

    fn reserved(&self, since: String, except_event: i64, action: Option<String>) -> StoreFuture<'_, f64> {
        Box::pin(async move { spend::reserved(&self.read, &since, except_event, action.as_deref()).await })
    }

    fn hold(&self, claim: ClaimRef, reason: String, until: String) -> StoreFuture<'_, bool> {
        Box::pin(async move { expect!(self.submit(Op::Hold { claim, reason, until }), Bool) })
    }

    fn release_held(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move { expect!(self.submit(Op::ReleaseHeld), Count) })
    }

    fn flow_admit(&self, ask: crate::store::flow::FlowAsk) -> StoreFuture<'_, crate::store::flow::FlowVerdict> {
        Box::pin(async move { expect!(self.submit(Op::FlowAdmit(Box::new(ask))), Verdict) })
    }

    fn flow_release(&self, event_row_id: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move { expect!(self.submit(Op::FlowRelease(event_row_id)), Count) })
    }

    fn flow_supersede_running(&self, claim: ClaimRef, action: String, by: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move { expect!(self.submit(Op::FlowSupersedeRunning { claim, action, by }), Bool) })
    }

    fn flow_cancels(&self, running: Vec<i64>) -> StoreFuture<'_, Vec<(i64, i64)>> {
        Box::pin(async move {
            let rows: Vec<(i64, i64)> =
                sqlx::query_as(AssertSqlSafe(crate::store::flow::sql::CANCELS.replace('$', "?")))
                    .fetch_all(&self.read)
                    .await?;
            Ok(rows.into_iter().filter(|(id, _)| running.contains(id)).collect())
        })
    }

    fn flow_pause(&self, pool: String, retry_after: Option<Duration>) -> StoreFuture<'_, String> {
        Box::pin(async move { expect!(self.submit(Op::FlowPause { pool, retry_after }), Text) })
    }

    fn flow_pool_ok(&self, pool: String) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.submit(Op::FlowPoolOk(pool)).await?;
            Ok(())
        })
    }

    fn flow_sweep(&self, tidy: bool) -> StoreFuture<'_, u64> {
        Box::pin(async move { expect!(self.submit(Op::FlowSweep { tidy }), Count) })
    }

    fn flow_state(&self) -> StoreFuture<'_, crate::store::flow::FlowState> {
        Box::pin(flow::state(&self.read))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if self.writer.is_closed() {
                return Err(StoreError::WriterGone);
            }
            sqlx::query("SELECT 1").execute(&self.read).await?;
            Ok(())
        })
    }

    fn routing_version(&self) -> StoreFuture<'_, i64> {
        // Asked once per claim: the claim's own reading when there is one, else the writer
        // answers it (without a trip to sqlx's thread).
        let claimed = self
            .claimed_version
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Box::pin(async move {
            match claimed {
                Some(version) => Ok(version),
                None => expect!(self.submit(Op::RoutingVersion), Int),
            }
        })
    }

    fn delete_rule(&self, provider: &str, name: &str) -> StoreFuture<'_, bool> {
        let op = Op::DeleteRule {
            provider: provider.to_string(),
            name: name.to_string(),
        };
        Box::pin(async move { expect!(self.submit(op), Bool) })
    }

    fn apply(&self, changes: RoutingChanges) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.submit(Op::Apply(Box::new(changes))).await?;
            Ok(())
        })
    }

    fn schedules(&self) -> StoreFuture<'_, Vec<StoredSchedule>> {
        Box::pin(schedules::all(&self.read))
    }

    fn schedules_version(&self) -> StoreFuture<'_, i64> {
        Box::pin(schedules::version(&self.read))
    }

    fn revoke_session(&self, nonce: &str, expires_at: i64) -> StoreFuture<'_, ()> {
        let op = Op::RevokeSession {
            nonce: nonce.to_string(),
            expires_at,
        };
        Box::pin(async move {
            self.submit(op).await?;
            Ok(())
        })
    }

    fn session_revoked(&self, nonce: &str) -> StoreFuture<'_, bool> {
        let nonce = nonce.to_string();
        Box::pin(async move { sessions::revoked(&self.read, &nonce).await })
    }

    fn record_ticks(&self, ticks: Vec<TickRecord>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.submit(Op::RecordTicks(ticks)).await?;
            Ok(())
        })
    }
}
