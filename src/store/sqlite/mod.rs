//! The embedded SQLite backend.
//!
//! Writes go to the writer thread ([`writer`]): group commit, a reply only
//! after `COMMIT`. Reads use a separate sqlx pool; WAL lets them run beside the writer.

mod admin;
mod attempts;
mod checkpoint;
mod claim;
mod enqueue;
mod file;
mod finish;
mod flow;
#[cfg(test)]
mod plans;
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
use super::{action_states, rows};
use writer::{Op, OpResult, WriteOp};

pub(crate) use file::{check_existing, prepare};

/// The schema, oldest first (embedded in the binary).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "seed layout",
        include_str!("../../../migrations/sqlite/0001_seed_layout.sql"),
    ),
    (
        2,
        "leases and indexes",
        include_str!("../../../migrations/sqlite/0002_leases_and_indexes.sql"),
    ),
    (
        10,
        "schedules",
        include_str!("../../../migrations/sqlite/0010_schedules.sql"),
    ),
    (
        11,
        "operator api",
        include_str!("../../../migrations/sqlite/0011_operator_api.sql"),
    ),
    (
        12,
        "finished index without an IN list",
        include_str!("../../../migrations/sqlite/0012_finished_index_without_in_list.sql"),
    ),
    (
        13,
        "provider index for routed rows",
        include_str!("../../../migrations/sqlite/0013_provider_index_for_routed_rows.sql"),
    ),
    (
        14,
        "status index without done rows",
        include_str!("../../../migrations/sqlite/0014_status_index_without_done.sql"),
    ),
    (
        21,
        "rule continue",
        include_str!("../../../migrations/sqlite/0021_rule_continue.sql"),
    ),
    (
        22,
        "llm usage",
        include_str!("../../../migrations/sqlite/0022_llm_usage.sql"),
    ),
    (
        23,
        "event attempts",
        include_str!("../../../migrations/sqlite/0023_event_attempts.sql"),
    ),
    (
        24,
        "schedule active since",
        include_str!("../../../migrations/sqlite/0024_schedule_active_since.sql"),
    ),
    (
        25,
        "revoked dashboard sessions",
        include_str!("../../../migrations/sqlite/0025_revoked_sessions.sql"),
    ),
    (
        26,
        "action run attempts",
        include_str!("../../../migrations/sqlite/0026_action_run_attempts.sql"),
    ),
    (
        30,
        "flow control",
        include_str!("../../../migrations/sqlite/0030_flow_control.sql"),
    ),
    (
        31,
        "finished index with flow statuses",
        include_str!("../../../migrations/sqlite/0031_finished_index_flow_statuses.sql"),
    ),
    (
        32,
        "waiting index",
        include_str!("../../../migrations/sqlite/0032_waiting_index.sql"),
    ),
];

/// The WHERE of the `events_finished` index (migrations 0012, 0031), which a query repeats
/// verbatim so that SQLite sees the index applies.
macro_rules! finished_rows {
    () => {
        "(status = 'done' OR status = 'error' OR status = 'cancelled' OR status = 'skipped' OR status = 'superseded')"
    };
}
pub(crate) use finished_rows;

use super::query::{COUNT_NOT_DONE, COUNT_QUEUED};

/// `done` events (`events_finished`).
const COUNT_DONE: &str = concat!(
    "SELECT COUNT(*) FROM events WHERE ",
    finished_rows!(),
    " AND status = 'done'"
);

/// Events of a status (`?1`) finished since `?2`, for `/stats`.
const FINISHED_SINCE: &str = concat!(
    "SELECT COUNT(*) FROM events WHERE ",
    finished_rows!(),
    " AND status = ?1 AND processed_at >= ?2"
);

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

    /// The `next_attempt_at` of the oldest due event (the due index's first entry).
    async fn oldest_due(&self) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM events INDEXED BY events_due WHERE status IN ('pending', 'retry') AND next_attempt_at <= ?1",
        )
        .bind(crate::time::now())
        .fetch_one(&self.read)
        .await?)
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

const RULE_COLUMNS: &str = "SELECT id, provider, name, priority, conditions_json, action, handler_mode, handler_target, enabled, continue_after_match, flow_json FROM routing_rules";
const EVENT_COLUMNS: &str = "SELECT id, source, event_id, received_at, status, attempt_count, next_attempt_at, \
     processing_started_at, processed_at, payload_json, result_json, last_error FROM events";

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
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT id, event_row_id, started_at, finished_at, status, provider, action, handler_mode, \
                 handler_target, input_json, output_json, error, attempts FROM action_runs WHERE event_row_id = ? AND action = ?",
            )
            .bind(event_row_id)
            .bind(action)
            .fetch_optional(&self.read)
            .await?;
            let mut runs: Vec<ActionRunRow> = row.as_ref().map(rows::action_run).transpose()?.into_iter().collect();
            if run_input::needs_event(&runs) {
                run_input::resolve(&mut runs, self.event(event_row_id).await?.as_ref());
            }
            Ok(runs.pop())
        })
    }

    fn event(&self, row_id: i64) -> StoreFuture<'_, Option<EventRow>> {
        Box::pin(async move {
            let row = sqlx::query(AssertSqlSafe(format!("{EVENT_COLUMNS} WHERE id = ?")))
                .bind(row_id)
                .fetch_optional(&self.read)
                .await?;
            Ok(row.as_ref().map(rows::event).transpose()?)
        })
    }

    fn action_runs(&self, event_row_id: i64) -> StoreFuture<'_, Vec<ActionRunRow>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, event_row_id, started_at, finished_at, status, provider, action, handler_mode, \
                 handler_target, input_json, output_json, error, attempts FROM action_runs WHERE event_row_id = ? ORDER BY id DESC",
            )
            .bind(event_row_id)
            .fetch_all(&self.read)
            .await?;
            let mut runs = rows.iter().map(rows::action_run).collect::<Result<Vec<_>, _>>()?;
            if run_input::needs_event(&runs) {
                run_input::resolve(&mut runs, self.event(event_row_id).await?.as_ref());
            }
            Ok(runs)
        })
    }

    fn attempts(&self, event_row_id: i64) -> StoreFuture<'_, Vec<AttemptRow>> {
        Box::pin(async move {
            let rows = sqlx::query(super::attempts::SELECT_BY_EVENT)
                .bind(event_row_id)
                .fetch_all(&self.read)
                .await?;
            Ok(rows.iter().map(rows::attempt).collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn list_page(&self, filter: EventFilter, cursor: Option<Cursor>, limit: u32) -> StoreFuture<'_, EventPage> {
        Box::pin(async move {
            let (sql, c) = query::page_sql(Dialect::Sqlite, &filter, cursor.as_ref());
            let q = query::bind_all(sqlx::query(AssertSqlSafe(sql)), &c.binds).bind(i64::from(limit) + 1);
            let rows = q.fetch_all(&self.read).await?;
            let mut page = rows::page(&rows, limit as usize)?;
            if !page.events.is_empty() {
                let runs = sqlx::query_as(action_states::SQLITE_SQL)
                    .bind(action_states::ids_json(&page))
                    .fetch_all(&self.read)
                    .await?;
                action_states::attach(&mut page, runs);
            }
            Ok(page)
        })
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

    fn stats(&self) -> StoreFuture<'_, Stats> {
        Box::pin(async move {
            let mut stats = Stats::default();
            for status in query::STATUSES {
                stats.by_status.insert((*status).to_string(), 0);
            }
            // Two reads, each on its index: the status index holds no `done` rows.
            let counts = sqlx::query(COUNT_NOT_DONE).fetch_all(&self.read).await?;
            for r in &counts {
                let status: Option<String> = r.try_get("status")?;
                stats.by_status.insert(status.unwrap_or_default(), r.try_get("n")?);
            }
            let done: i64 = sqlx::query_scalar(COUNT_DONE).fetch_one(&self.read).await?;
            stats.by_status.insert(EventStatus::Done.as_str().to_string(), done);
            stats.oldest_due_age_seconds = self.oldest_due().await?.as_deref().and_then(crate::time::age_seconds);
            let (minute, hour) = query::rate_windows();
            let rate = |status: EventStatus, since: String| async move {
                sqlx::query_scalar::<_, i64>(FINISHED_SINCE)
                    .bind(status.as_str())
                    .bind(since)
                    .fetch_one(&self.read)
                    .await
            };
            stats.done_last_minute = rate(EventStatus::Done, minute.clone()).await?;
            stats.failed_last_minute = rate(EventStatus::Error, minute).await?;
            stats.done_last_hour = rate(EventStatus::Done, hour.clone()).await?;
            stats.failed_last_hour = rate(EventStatus::Error, hour).await?;
            Ok(stats)
        })
    }

    fn per_minute(&self, now: chrono::DateTime<chrono::Utc>, minutes: u32) -> StoreFuture<'_, Vec<MinuteCounts>> {
        Box::pin(async move { Ok(admin::per_minute(&self.read, now, minutes).await?) })
    }

    fn queue_depth(&self) -> StoreFuture<'_, QueueDepth> {
        Box::pin(async move {
            let rows = sqlx::query(COUNT_QUEUED).fetch_all(&self.read).await?;
            let mut depth = QueueDepth::default();
            for r in &rows {
                depth.set(&r.try_get::<String, _>("status")?, r.try_get("n")?);
            }
            depth.oldest_due = self.oldest_due().await?;
            Ok(depth)
        })
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

    fn routing_tables(&self) -> StoreFuture<'_, RoutingTables> {
        Box::pin(async move {
            let rules = sqlx::query(RULE_COLUMNS).fetch_all(&self.read).await?;
            let mappings = sqlx::query(
                "SELECT provider, action, handler_mode, handler_target, enabled, flow_json FROM provider_mappings",
            )
            .fetch_all(&self.read)
            .await?;
            Ok(RoutingTables {
                rules: rules.iter().map(rows::rule).collect::<Result<_, _>>()?,
                mappings: mappings.iter().map(rows::mapping).collect::<Result<_, _>>()?,
            })
        })
    }

    fn mapping(&self, provider: &str) -> StoreFuture<'_, Option<Mapping>> {
        let provider = provider.to_string();
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT provider, action, handler_mode, handler_target, enabled, flow_json FROM provider_mappings WHERE provider = ?",
            )
            .bind(provider)
            .fetch_optional(&self.read)
            .await?;
            Ok(row.as_ref().map(rows::mapping).transpose()?)
        })
    }

    fn rules(&self, provider: &str) -> StoreFuture<'_, Vec<Rule>> {
        let provider = provider.to_string();
        Box::pin(async move {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "{RULE_COLUMNS} WHERE provider = ? ORDER BY priority, id"
            )))
            .bind(provider)
            .fetch_all(&self.read)
            .await?;
            Ok(rows.iter().map(rows::rule).collect::<Result<_, _>>()?)
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
