//! The embedded SQLite backend.
//!
//! Writes go through one writer task that owns the only writing connection: it takes
//! every request waiting in its queue, runs them in one `BEGIN IMMEDIATE` transaction
//! (group commit: one WAL commit for many webhooks) and answers each through a oneshot
//! after `COMMIT`. Reads use a separate pool; WAL lets them run beside the writer.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::rows;
use super::*;
use crate::routing::{Mapping, Rule};
use crate::time;

/// Most requests folded into one transaction.
const MAX_BATCH: usize = 512;
/// Rows per multi-row INSERT statement.
const INSERT_CHUNK: usize = 64;

/// The schema, oldest first (embedded in the binary).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "seed layout",
        include_str!("../../migrations/sqlite/0001_seed_layout.sql"),
    ),
    (
        2,
        "leases and indexes",
        include_str!("../../migrations/sqlite/0002_leases_and_indexes.sql"),
    ),
];

/// The SQLite store.
pub struct SqliteStore {
    writer: mpsc::Sender<WriteOp>,
    read: SqlitePool,
}

enum OpResult {
    Enqueued(Enqueued),
    Claimed(Vec<ClaimedEvent>),
    Bool(bool),
    Count(u64),
    Unit,
}

enum Op {
    Enqueue(NewEvent),
    Claim { limit: usize, lease: Duration },
    Renew { claims: Vec<ClaimRef>, lease: Duration },
    Finish(Box<Finish>),
    Release(Vec<ClaimRef>),
    Reclaim { max_attempts: u32 },
    StartRun(Box<ActionRunRecord>),
    Replay(i64),
    Apply(Box<RoutingChanges>),
}

struct WriteOp {
    op: Op,
    reply: oneshot::Sender<Result<OpResult, StoreError>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it.
    pub async fn open(path: &Path, synchronous: &str) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!(
                    "cannot create directory {} for APP_DB_PATH: {e}",
                    parent.display()
                ))
            })?;
        }
        let sync = SqliteSynchronous::from_str(synchronous)
            .map_err(|_| StoreError::Config(format!("invalid SQLITE_SYNCHRONOUS '{synchronous}'")))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false)
            .pragma("temp_store", "memory");

        let mut writer = SqliteConnection::connect_with(&options).await.map_err(|e| {
            StoreError::Config(format!(
                "cannot open SQLite database {} (APP_DB_PATH): {e}",
                path.display()
            ))
        })?;
        // `run_direct`: `run`'s `Acquire` bound would make `store::open`'s future not `Send`.
        migrator(MIGRATIONS).run_direct(None, &mut writer, false).await?;

        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options)
            .await?;

        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer_loop(writer, rx));
        Ok(SqliteStore { writer: tx, read })
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

async fn writer_loop(mut conn: SqliteConnection, mut rx: mpsc::Receiver<WriteOp>) {
    let mut batch: Vec<WriteOp> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match run_batch(&mut conn, &batch).await {
            Ok(results) => {
                for (op, result) in batch.drain(..).zip(results) {
                    let _ = op.reply.send(Ok(result));
                }
            }
            Err(e) => {
                // One bad request must not fail the others: redo each alone.
                tracing::warn!(error = %e, size = batch.len(), "batched write failed; retrying one by one");
                for op in batch.drain(..) {
                    let single = std::slice::from_ref(&op);
                    let result = run_batch(&mut conn, single).await.map(|mut r| r.remove(0));
                    let _ = op.reply.send(result.map_err(StoreError::from));
                }
            }
        }
    }
    let _ = conn.close().await;
}

/// Runs the requests in one transaction; results are in request order.
async fn run_batch(conn: &mut SqliteConnection, batch: &[WriteOp]) -> Result<Vec<OpResult>, sqlx::Error> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    match run_ops(conn, batch).await {
        Ok(results) => match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => Ok(results),
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        },
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

async fn run_ops(conn: &mut SqliteConnection, batch: &[WriteOp]) -> Result<Vec<OpResult>, sqlx::Error> {
    let now = time::now();
    let mut results: Vec<Option<OpResult>> = batch.iter().map(|_| None).collect();

    // Inserts first, all together, so claims in the same batch see them.
    let inserts: Vec<(usize, &NewEvent)> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, w)| match &w.op {
            Op::Enqueue(e) => Some((i, e)),
            _ => None,
        })
        .collect();
    if !inserts.is_empty() {
        for (i, outcome) in insert_events(conn, &inserts, &now).await? {
            results[i] = Some(OpResult::Enqueued(outcome));
        }
    }

    for (i, w) in batch.iter().enumerate() {
        let result = match &w.op {
            Op::Enqueue(_) => continue,
            Op::Claim { limit, lease } => OpResult::Claimed(claim(conn, *limit, *lease, &now).await?),
            Op::Renew { claims, lease } => {
                let until = time::after(*lease);
                for c in claims {
                    sqlx::query(
                        "UPDATE events SET lease_until = ? WHERE id = ? AND attempt_count = ? AND status = 'processing'",
                    )
                    .bind(&until)
                    .bind(c.id)
                    .bind(c.attempt)
                    .execute(&mut *conn)
                    .await?;
                }
                OpResult::Unit
            }
            Op::Finish(f) => OpResult::Bool(finish(conn, f, &now).await?),
            Op::Release(claims) => {
                let mut n = 0;
                for c in claims {
                    n += sqlx::query(
                        "UPDATE events SET status = 'retry', attempt_count = attempt_count - 1, \
                         next_attempt_at = ?, lease_until = NULL \
                         WHERE id = ? AND attempt_count = ? AND status = 'processing'",
                    )
                    .bind(&now)
                    .bind(c.id)
                    .bind(c.attempt)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                }
                OpResult::Count(n)
            }
            Op::Reclaim { max_attempts } => {
                let n = sqlx::query(
                    "UPDATE events SET \
                       status = CASE WHEN attempt_count >= ?1 THEN 'error' ELSE 'retry' END, \
                       processed_at = CASE WHEN attempt_count >= ?1 THEN ?2 ELSE processed_at END, \
                       last_error = 'lease expired: the worker holding this event stopped or stalled', \
                       next_attempt_at = ?2, lease_until = NULL \
                     WHERE status = 'processing' AND (lease_until IS NULL OR lease_until < ?2)",
                )
                .bind(i64::from(*max_attempts))
                .bind(&now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                OpResult::Count(n)
            }
            Op::StartRun(run) => {
                upsert_action_run(conn, run).await?;
                OpResult::Unit
            }
            Op::Replay(id) => {
                let n = sqlx::query(
                    "UPDATE events SET status = 'pending', attempt_count = 0, next_attempt_at = ?, \
                     last_error = NULL, processed_at = NULL, lease_until = NULL \
                     WHERE id = ? AND status != 'processing'",
                )
                .bind(&now)
                .bind(id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                OpResult::Bool(n == 1)
            }
            Op::Apply(changes) => {
                apply(conn, changes, &now).await?;
                OpResult::Unit
            }
        };
        results[i] = Some(result);
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(OpResult::Unit)).collect())
}

async fn insert_events(
    conn: &mut SqliteConnection,
    inserts: &[(usize, &NewEvent)],
    now: &str,
) -> Result<Vec<(usize, Enqueued)>, sqlx::Error> {
    // Identical events in one batch: the first is inserted, the rest are its duplicates.
    let mut first_of: HashMap<(&str, &str), usize> = HashMap::with_capacity(inserts.len());
    let mut unique: Vec<&NewEvent> = Vec::with_capacity(inserts.len());
    for (_, e) in inserts {
        first_of
            .entry((e.source.as_str(), e.event_id.as_str()))
            .or_insert_with(|| {
                unique.push(e);
                unique.len() - 1
            });
    }
    let mut inserted: HashMap<(String, String), i64> = HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(INSERT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO events (source, event_id, received_at, status, attempt_count, next_attempt_at, payload_json) VALUES ",
        );
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 {
                "(?, ?, ?, 'pending', 0, ?, ?)"
            } else {
                ", (?, ?, ?, 'pending', 0, ?, ?)"
            });
        }
        sql.push_str(" ON CONFLICT DO NOTHING RETURNING id, source, event_id");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for e in chunk {
            q = q
                .bind(&e.source)
                .bind(&e.event_id)
                .bind(now)
                .bind(now)
                .bind(&e.payload_json);
        }
        for row in q.fetch_all(&mut *conn).await? {
            inserted.insert((row.try_get("source")?, row.try_get("event_id")?), row.try_get("id")?);
        }
    }
    let mut out = Vec::with_capacity(inserts.len());
    let mut seen_new: HashMap<(&str, &str), ()> = HashMap::new();
    for (i, e) in inserts {
        let key = (e.source.as_str(), e.event_id.as_str());
        let outcome = match inserted.get(&(e.source.clone(), e.event_id.clone())) {
            Some(&id) if seen_new.insert(key, ()).is_none() => Enqueued::Queued(id),
            Some(&id) => Enqueued::Duplicate(id),
            None => {
                let id: i64 = sqlx::query_scalar("SELECT id FROM events WHERE source = ? AND event_id = ?")
                    .bind(&e.source)
                    .bind(&e.event_id)
                    .fetch_one(&mut *conn)
                    .await?;
                Enqueued::Duplicate(id)
            }
        };
        out.push((*i, outcome));
    }
    Ok(out)
}

async fn claim(
    conn: &mut SqliteConnection,
    limit: usize,
    lease: Duration,
    now: &str,
) -> Result<Vec<ClaimedEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "UPDATE events SET status = 'processing', processing_started_at = ?1, lease_until = ?2, \
           attempt_count = COALESCE(attempt_count, 0) + 1 \
         WHERE id IN (SELECT id FROM events \
                      WHERE status IN ('pending', 'retry') AND next_attempt_at <= ?1 \
                      ORDER BY next_attempt_at, id LIMIT ?3) \
         RETURNING id, source, event_id, attempt_count, payload_json",
    )
    .bind(now)
    .bind(time::after(lease))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    let mut claimed = rows
        .iter()
        .map(|r| {
            Ok(ClaimedEvent {
                id: r.try_get("id")?,
                source: r.try_get::<Option<String>, _>("source")?.unwrap_or_default(),
                event_id: r.try_get::<Option<String>, _>("event_id")?.unwrap_or_default(),
                attempt_count: r.try_get("attempt_count")?,
                payload_json: r.try_get::<Option<String>, _>("payload_json")?.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

async fn finish(conn: &mut SqliteConnection, f: &Finish, now: &str) -> Result<bool, sqlx::Error> {
    let q = match &f.outcome {
        Outcome::Done { result_json } => sqlx::query(
            "UPDATE events SET status = 'done', processed_at = ?, result_json = ?, last_error = NULL, \
             lease_until = NULL WHERE id = ? AND attempt_count = ? AND status = 'processing'",
        )
        .bind(now)
        .bind(result_json),
        Outcome::Retry { error, next_attempt_at } => sqlx::query(
            "UPDATE events SET status = 'retry', next_attempt_at = ?, last_error = ?, \
             lease_until = NULL WHERE id = ? AND attempt_count = ? AND status = 'processing'",
        )
        .bind(next_attempt_at)
        .bind(error),
        Outcome::Failed { error } => sqlx::query(
            "UPDATE events SET status = 'error', processed_at = ?, last_error = ?, \
             lease_until = NULL WHERE id = ? AND attempt_count = ? AND status = 'processing'",
        )
        .bind(now)
        .bind(error),
    };
    let applied = q
        .bind(f.claim.id)
        .bind(f.claim.attempt)
        .execute(&mut *conn)
        .await?
        .rows_affected()
        == 1;
    // A lost claim's action run is not written: the new owner will write its own.
    if applied && let Some(run) = &f.action_run {
        upsert_action_run(conn, run).await?;
    }
    Ok(applied)
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds an action run's values in the order both upsert statements use.
fn bind_run<'q>(q: SqliteQuery<'q>, run: &'q ActionRunRecord) -> SqliteQuery<'q> {
    q.bind(&run.started_at)
        .bind(&run.finished_at)
        .bind(&run.status)
        .bind(&run.provider)
        .bind(&run.handler_mode)
        .bind(&run.handler_target)
        .bind(&run.input_json)
        .bind(&run.output_json)
        .bind(&run.error)
        .bind(run.event_row_id)
        .bind(&run.action)
}

async fn upsert_action_run(conn: &mut SqliteConnection, run: &ActionRunRecord) -> Result<(), sqlx::Error> {
    // Select-then-write is race-free here: this connection is the only writer in-process
    // and BEGIN IMMEDIATE excludes writers in other processes.
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM action_runs WHERE event_row_id = ? AND action = ?")
        .bind(run.event_row_id)
        .bind(&run.action)
        .fetch_optional(&mut *conn)
        .await?;
    let q = match existing {
        Some(id) => bind_run(
            sqlx::query(
                "UPDATE action_runs SET started_at = ?, finished_at = ?, status = ?, provider = ?, handler_mode = ?, \
             handler_target = ?, input_json = ?, output_json = ?, error = ?, event_row_id = ?, action = ? WHERE id = ?",
            ),
            run,
        )
        .bind(id),
        None => bind_run(
            sqlx::query(
                "INSERT INTO action_runs (started_at, finished_at, status, provider, handler_mode, handler_target, \
             input_json, output_json, error, event_row_id, action) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            run,
        ),
    };
    q.execute(&mut *conn).await?;
    Ok(())
}

async fn apply(conn: &mut SqliteConnection, changes: &RoutingChanges, now: &str) -> Result<(), sqlx::Error> {
    for m in &changes.mappings {
        sqlx::query(
            "INSERT INTO provider_mappings (provider, action, handler_mode, handler_target, enabled, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(provider) DO UPDATE SET action = excluded.action, \
             handler_mode = excluded.handler_mode, handler_target = excluded.handler_target, \
             enabled = excluded.enabled, updated_at = excluded.updated_at",
        )
        .bind(&m.provider)
        .bind(&m.action)
        .bind(&m.handler_mode)
        .bind(&m.handler_target)
        .bind(i64::from(m.enabled))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    for r in &changes.rules {
        sqlx::query(
            "INSERT INTO routing_rules (provider, name, priority, conditions_json, action, handler_mode, \
             handler_target, enabled, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(provider, name) DO UPDATE SET priority = excluded.priority, \
             conditions_json = excluded.conditions_json, action = excluded.action, \
             handler_mode = excluded.handler_mode, handler_target = excluded.handler_target, \
             enabled = excluded.enabled, updated_at = excluded.updated_at",
        )
        .bind(&r.provider)
        .bind(&r.name)
        .bind(r.priority)
        .bind(&r.conditions_json)
        .bind(&r.action)
        .bind(&r.handler_mode)
        .bind(&r.handler_target)
        .bind(i64::from(r.enabled))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

const RULE_COLUMNS: &str = "SELECT id, provider, name, priority, conditions_json, action, handler_mode, handler_target, enabled FROM routing_rules";
const EVENT_COLUMNS: &str = "SELECT id, source, event_id, received_at, status, attempt_count, next_attempt_at, \
     processing_started_at, processed_at, payload_json, result_json, last_error FROM events";

macro_rules! expect {
    ($fut:expr, $variant:ident) => {
        match $fut.await? {
            OpResult::$variant(v) => Ok(v),
            _ => Err(StoreError::Config(
                "internal error: the writer answered with the wrong result kind".into(),
            )),
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
        Box::pin(async move { expect!(self.submit(Op::Claim { limit, lease }), Claimed) })
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

    fn release(&self, claims: Vec<ClaimRef>) -> StoreFuture<'_, u64> {
        Box::pin(async move { expect!(self.submit(Op::Release(claims)), Count) })
    }

    fn reclaim_expired(&self, max_attempts: u32) -> StoreFuture<'_, u64> {
        Box::pin(async move { expect!(self.submit(Op::Reclaim { max_attempts }), Count) })
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
                 handler_target, input_json, output_json, error FROM action_runs WHERE event_row_id = ? AND action = ?",
            )
            .bind(event_row_id)
            .bind(action)
            .fetch_optional(&self.read)
            .await?;
            Ok(row.as_ref().map(rows::action_run).transpose()?)
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
                 handler_target, input_json, output_json, error FROM action_runs WHERE event_row_id = ? ORDER BY id DESC",
            )
            .bind(event_row_id)
            .fetch_all(&self.read)
            .await?;
            Ok(rows.iter().map(rows::action_run).collect::<Result<_, _>>()?)
        })
    }

    fn list_events(&self, status: Option<String>, limit: i64) -> StoreFuture<'_, Vec<EventRow>> {
        Box::pin(async move {
            let rows = match status {
                Some(s) => {
                    sqlx::query(AssertSqlSafe(format!(
                        "{EVENT_COLUMNS} WHERE status = ? ORDER BY id DESC LIMIT ?"
                    )))
                    .bind(s)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?
                }
                None => {
                    sqlx::query(AssertSqlSafe(format!("{EVENT_COLUMNS} ORDER BY id DESC LIMIT ?")))
                        .bind(limit)
                        .fetch_all(&self.read)
                        .await?
                }
            };
            Ok(rows.iter().map(rows::event).collect::<Result<_, _>>()?)
        })
    }

    fn replay(&self, row_id: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move { expect!(self.submit(Op::Replay(row_id)), Bool) })
    }

    fn routing_version(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            let v: Option<i64> = sqlx::query_scalar("SELECT value FROM switchyard_meta WHERE key = 'routing_version'")
                .fetch_optional(&self.read)
                .await?;
            Ok(v.unwrap_or(0))
        })
    }

    fn routing_tables(&self) -> StoreFuture<'_, RoutingTables> {
        Box::pin(async move {
            let rules = sqlx::query(RULE_COLUMNS).fetch_all(&self.read).await?;
            let mappings =
                sqlx::query("SELECT provider, action, handler_mode, handler_target, enabled FROM provider_mappings")
                    .fetch_all(&self.read)
                    .await?;
            let mut tables = RoutingTables::default();
            for r in &rules {
                if let Some(rule) = rows::rule(r)? {
                    tables.rules.push(rule);
                }
            }
            tables.mappings = mappings.iter().map(rows::mapping).collect::<Result<_, _>>()?;
            Ok(tables)
        })
    }

    fn mapping(&self, provider: &str) -> StoreFuture<'_, Option<Mapping>> {
        let provider = provider.to_string();
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT provider, action, handler_mode, handler_target, enabled FROM provider_mappings WHERE provider = ?",
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
            let mut rules = Vec::with_capacity(rows.len());
            for r in &rows {
                if let Some(rule) = rows::rule(r)? {
                    rules.push(rule);
                }
            }
            Ok(rules)
        })
    }

    fn apply(&self, changes: RoutingChanges) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.submit(Op::Apply(Box::new(changes))).await?;
            Ok(())
        })
    }
}
