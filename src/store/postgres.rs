//! The PostgreSQL backend: many instances sharing one queue.
//!
//! Same tables, columns and semantics as [`super::sqlite`] (timestamps are the same RFC 3339
//! text), so rows and JSON are identical on both backends. What differs is how instances
//! cooperate:
//!
//! - **Claims** are one statement that locks due rows with `FOR NO KEY UPDATE SKIP LOCKED`,
//!   so any number of workers in any number of processes claim disjoint rows without
//!   waiting on each other; no transaction stays open while a handler runs.
//! - **Enqueues** go through a collector task: concurrent requests are folded into one
//!   multi-row `INSERT … ON CONFLICT (source, event_id) DO NOTHING` transaction (a few run
//!   at once), which also sends `NOTIFY switchyard_events` before its commit.
//! - **Wake-ups across instances:** a background `LISTEN switchyard_events` connection
//!   resolves [`Store::external_wake`] on every notification and after every
//!   (re)connection; polling stays the fallback.
//! - **Lost connections** (`pg_terminate_backend`, a restarted server) are not fatal: the
//!   pool tests connections before use, and an operation that fails because its connection
//!   died is retried once on a fresh one when that is safe.
//!
//! docs/POSTGRES.md is the operator's view of all this.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::rows;
use super::*;
use crate::routing::{Mapping, Rule};
use crate::time;

/// The schema, oldest first (embedded in the binary).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial layout",
    include_str!("../../migrations/postgres/0001_initial.sql"),
)];

/// The NOTIFY channel that announces new due work to every instance on the database.
///
/// Channels are database-wide, so the payload names the schema of the queue
/// (`current_schema()`); a listener ignores other schemas' notifications, and an empty
/// payload (a hand-typed `NOTIFY switchyard_events`) wakes everyone.
pub const CHANNEL: &str = "switchyard_events";

/// `application_name` of our connections unless the URL sets one (visible in `pg_stat_activity`).
const APPLICATION_NAME: &str = "switchyard";

/// Most enqueue requests folded into one transaction.
const MAX_BATCH: usize = 512;

/// The listener's reconnection back-off, first and longest.
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The `last_error` of an event whose lease expired (same text as SQLite).
const LEASE_EXPIRED: &str = "lease expired: the worker holding this event stopped or stalled";

/// Connection settings.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections in the pool (`DATABASE_POOL_SIZE`); the listener uses one more.
    pub pool_size: u32,
    /// `statement_timeout` of every pooled connection (`DATABASE_STATEMENT_TIMEOUT_SECONDS`).
    pub statement_timeout: Duration,
    /// How long start-up keeps retrying an unreachable server (`DATABASE_CONNECT_TIMEOUT_SECONDS`).
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            pool_size: 10,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

impl PgOptions {
    /// From the service settings.
    pub fn from_settings(s: &crate::settings::Settings) -> PgOptions {
        PgOptions {
            pool_size: s.database_pool_size.max(1),
            statement_timeout: Duration::from_secs_f64(s.database_statement_timeout),
            connect_timeout: Duration::from_secs_f64(s.database_connect_timeout),
        }
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: PgPool,
    enqueue_tx: mpsc::Sender<EnqueueRequest>,
    /// Options for the LISTEN connection (the pool's, without a statement timeout).
    listen_options: PgConnectOptions,
    /// The schema holding our tables: the payload of our notifications.
    schema: String,
    /// Poked by the listener task; awaited by [`Store::external_wake`].
    wake: Arc<Notify>,
    /// Started by the first `external_wake`, so CLI commands and `http`-only instances
    /// (which never wait for work) hold no LISTEN connection.
    listener: OnceLock<JoinHandle<()>>,
}

struct EnqueueRequest {
    event: NewEvent,
    reply: oneshot::Sender<Result<Enqueued, StoreError>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(task) = self.listener.get() {
            task.abort();
        }
    }
}

impl PgStore {
    /// Connects (retrying while the server is not up yet), migrates, and starts the
    /// enqueue collector.
    ///
    /// The arguments are copied first so that the future borrows nothing: it is `Send +
    /// 'static` and can be spawned (borrowed arguments run into rustc's "Send is not
    /// general enough" limitation in callers).
    pub fn connect(
        url: &str,
        options: &PgOptions,
    ) -> impl Future<Output = Result<PgStore, StoreError>> + Send + 'static {
        let (url, options) = (url.to_string(), options.clone());
        async move { PgStore::connect_owned(&url, &options).await }
    }

    async fn connect_owned(url: &str, options: &PgOptions) -> Result<PgStore, StoreError> {
        let base = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")))?;
        let base = if base.get_application_name().is_none() {
            base.application_name(APPLICATION_NAME)
        } else {
            base
        };
        let pooled = base
            .clone()
            .options([("statement_timeout", options.statement_timeout.as_millis())]);

        let mut first = connect_with_retry(&base, options.connect_timeout).await?;
        migrate(&mut first).await?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&mut first)
            .await?;
        let _ = first.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size)
            .min_connections(0)
            // Pings a pooled connection before handing it out, so one killed while idle
            // (pg_terminate_backend, a server restart) is replaced instead of failing a query.
            .test_before_acquire(true)
            .acquire_timeout(options.statement_timeout.max(Duration::from_secs(1)))
            .connect_lazy_with(pooled);

        let (enqueue_tx, enqueue_rx) = mpsc::channel(4096);
        // Half the pool at most, so claims and finishes always find a connection.
        let parallel = (options.pool_size as usize / 2).max(1);
        tokio::spawn(enqueue_loop(pool.clone(), enqueue_rx, parallel));

        Ok(PgStore {
            pool,
            enqueue_tx,
            listen_options: base,
            schema,
            wake: Arc::new(Notify::new()),
            listener: OnceLock::new(),
        })
    }

    /// Tells every listening instance that there is due work (best effort: polling is the
    /// fallback, so a failure is only logged).
    async fn notify(&self) {
        if let Err(e) = sqlx::query("SELECT pg_notify($1, current_schema())")
            .bind(CHANNEL)
            .execute(&self.pool)
            .await
        {
            tracing::debug!(error = %e, "NOTIFY failed; other instances will find the work by polling");
        }
    }
}

/// Where the URL points, for messages (never the password).
fn describe(o: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or(o.get_username())
    )
}

/// Opens the first connection, retrying while the server is unreachable or starting up
/// (each retry is logged) until `timeout`; errors that retrying cannot fix (wrong
/// database name, authentication) fail at once.
async fn connect_with_retry(options: &PgConnectOptions, timeout: Duration) -> Result<PgConnection, StoreError> {
    let target = describe(options);
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        // A black-holed host would otherwise hang the TCP connect for minutes.
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let error = match tokio::time::timeout(budget, PgConnection::connect_with(options)).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => e,
            Err(_) => sqlx::Error::PoolTimedOut,
        };
        if !worth_retrying(&error) {
            return Err(StoreError::Config(format!(
                "cannot connect to PostgreSQL at {target} (DATABASE_URL): {}",
                explain(&error)
            )));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StoreError::Config(format!(
                "cannot connect to PostgreSQL at {target} (DATABASE_URL) within {:.0} s \
                 (DATABASE_CONNECT_TIMEOUT_SECONDS): {}",
                timeout.as_secs_f64(),
                explain(&error)
            )));
        }
        let wait = delay.min(left);
        tracing::warn!(attempt, %target, error = %explain(&error), retry_in_ms = wait.as_millis() as u64,
            "PostgreSQL (DATABASE_URL) is not reachable yet; retrying");
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(Duration::from_secs(2));
        attempt += 1;
    }
}

/// A connection error for a person: the server's message and SQLSTATE, or the driver's.
fn explain(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::PoolTimedOut => "timed out".to_string(),
        other => other.to_string(),
    }
}

/// Start-up errors a later attempt may not see: the server is down, starting or full.
fn worth_retrying(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // cannot_connect_now (starting up), too_many_connections, admin/crash shutdown.
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("57P03" | "53300" | "57P01" | "57P02")),
        _ => false,
    }
}

/// Errors meaning the connection died under the operation (it was killed, the server
/// restarted); the operation can be tried again on a fresh connection.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Runs `op`, and once more if its connection was lost. Only for operations that are safe
/// to repeat: fenced updates, upserts, reads, and transactions that failed before COMMIT.
async fn retry_lost<T, F, Fut>(what: &'static str, mut op: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    match op().await {
        Err(e) if connection_lost(&e) => {
            tracing::warn!(operation = what, error = %e, "PostgreSQL connection lost; retrying on a fresh connection");
            op().await
        }
        other => other,
    }
}

/// Applies the embedded migrations. sqlx's migrator holds `pg_advisory_lock` (keyed on the
/// database name) while it checks and applies them, so instances starting together on a
/// fresh database wait for each other instead of racing; the lock is released when this
/// dedicated connection closes, even if a migration fails.
async fn migrate(conn: &mut PgConnection) -> Result<(), StoreError> {
    // A schema change may legitimately take longer than a request.
    sqlx::query("SET statement_timeout = 0").execute(&mut *conn).await?;
    // Not "relation _sqlx_migrations already exists, skipping" in the log at every start.
    sqlx::query("SET client_min_messages = warning")
        .execute(&mut *conn)
        .await?;
    // `run_direct` rather than `run`: `run`'s `Acquire` bound makes the future of
    // `store::open` not `Send` (sqlx's documented workaround), so it could not be spawned.
    migrator(MIGRATIONS).run_direct(None, conn, false).await?;
    Ok(())
}

/// Takes enqueue requests and runs them in batches: while `parallel` batches are in
/// flight, new requests queue up and go together into the next transaction.
async fn enqueue_loop(pool: PgPool, mut rx: mpsc::Receiver<EnqueueRequest>, parallel: usize) {
    let permits = Arc::new(Semaphore::new(parallel));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            run_enqueue_batch(&pool, batch).await;
            drop(permit);
        });
    }
}

/// Inserts a batch and answers every request; if the batch fails, each request is tried
/// alone so one bad request cannot fail the others.
async fn run_enqueue_batch(pool: &PgPool, batch: Vec<EnqueueRequest>) {
    let events: Vec<&NewEvent> = batch.iter().map(|r| &r.event).collect();
    match insert_with_retry(pool, &events).await {
        Ok(outcomes) => {
            for (req, outcome) in batch.into_iter().zip(outcomes) {
                let _ = req.reply.send(Ok(outcome));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(req) = batch.into_iter().next() {
                let _ = req.reply.send(Err(e.into()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, size = batch.len(), "batched enqueue failed; retrying one by one");
            for req in batch {
                let result = insert_with_retry(pool, &[&req.event]).await.map(|mut o| o.remove(0));
                let _ = req.reply.send(result.map_err(StoreError::from));
            }
        }
    }
}

/// How an enqueue transaction failed: before COMMIT nothing was written, so it may be
/// repeated; a failed COMMIT may or may not have committed.
enum InsertError {
    BeforeCommit(sqlx::Error),
    AtCommit(sqlx::Error),
}

async fn insert_with_retry(pool: &PgPool, events: &[&NewEvent]) -> Result<Vec<Enqueued>, sqlx::Error> {
    match insert_events(pool, events).await {
        Ok(v) => Ok(v),
        Err(InsertError::BeforeCommit(e)) if connection_lost(&e) => {
            tracing::warn!(error = %e, "PostgreSQL connection lost during an enqueue; retrying on a fresh connection");
            insert_events(pool, events)
                .await
                .map_err(|(InsertError::BeforeCommit(e) | InsertError::AtCommit(e))| e)
        }
        Err(InsertError::BeforeCommit(e) | InsertError::AtCommit(e)) => Err(e),
    }
}

/// One transaction: insert the new events, learn the row ids of the existing ones, NOTIFY
/// (delivered at commit, so listeners never see uncommitted rows), commit. Results are in
/// request order; the first of identical requests is the `Queued` one.
async fn insert_events(pool: &PgPool, events: &[&NewEvent]) -> Result<Vec<Enqueued>, InsertError> {
    use InsertError::BeforeCommit;
    // One row per key, in key order: concurrent batches (other instances included) then
    // take the unique-index locks in the same order and cannot deadlock.
    let mut keys: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.source.as_str(), e.event_id.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let first_payload: HashMap<(&str, &str), &str> = events
        .iter()
        .rev()
        .map(|e| ((e.source.as_str(), e.event_id.as_str()), e.payload_json.as_str()))
        .collect();
    let rows: Vec<(&str, &str, &str)> = keys
        .iter()
        .map(|k| (k.0, k.1, first_payload.get(k).copied().unwrap_or_default()))
        .collect();
    let now = time::now();

    let mut tx = pool.begin().await.map_err(BeforeCommit)?;
    let mut new_ids: HashMap<(String, String), i64> = HashMap::with_capacity(keys.len());
    // Chunks in key order keep the lock order.
    for chunk in message_chunks(&rows, |r| r.0.len() + r.1.len() + r.2.len()) {
        let sources: Vec<&str> = chunk.iter().map(|r| r.0).collect();
        let event_ids: Vec<&str> = chunk.iter().map(|r| r.1).collect();
        let payloads: Vec<&str> = chunk.iter().map(|r| r.2).collect();
        let inserted = sqlx::query(
            "INSERT INTO events (source, event_id, received_at, status, attempt_count, next_attempt_at, payload_json) \
             SELECT t.source, t.event_id, $4, 'pending', 0, $4, t.payload_json \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(source, event_id, payload_json, n) \
             ORDER BY t.n \
             ON CONFLICT (source, event_id) DO NOTHING \
             RETURNING id, source, event_id",
        )
        .bind(&sources)
        .bind(&event_ids)
        .bind(&payloads)
        .bind(&now)
        .fetch_all(&mut *tx)
        .await
        .map_err(BeforeCommit)?;
        collect_ids(&inserted, &mut new_ids).map_err(BeforeCommit)?;
    }

    // The others exist: ON CONFLICT waited for any concurrent inserter to commit, and this
    // next statement (READ COMMITTED) sees what it committed.
    let mut existing: HashMap<(String, String), i64> = HashMap::new();
    if new_ids.len() < keys.len() {
        let (src, ids): (Vec<&str>, Vec<&str>) = keys
            .iter()
            .filter(|k| !new_ids.contains_key(&(k.0.to_string(), k.1.to_string())))
            .copied()
            .unzip();
        let rows = sqlx::query(
            "SELECT e.id, e.source, e.event_id FROM events e \
             JOIN UNNEST($1::text[], $2::text[]) AS k(source, event_id) \
               ON e.source = k.source AND e.event_id = k.event_id",
        )
        .bind(&src)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(BeforeCommit)?;
        collect_ids(&rows, &mut existing).map_err(BeforeCommit)?;
    }
    if !new_ids.is_empty() {
        sqlx::query("SELECT pg_notify($1, current_schema())")
            .bind(CHANNEL)
            .execute(&mut *tx)
            .await
            .map_err(BeforeCommit)?;
    }
    tx.commit().await.map_err(InsertError::AtCommit)?;

    let mut out = Vec::with_capacity(events.len());
    let mut answered_new: HashSet<(&str, &str)> = HashSet::new();
    for e in events {
        let key = (e.source.clone(), e.event_id.clone());
        let short = (e.source.as_str(), e.event_id.as_str());
        let outcome = match (new_ids.get(&key), existing.get(&key)) {
            (Some(&id), _) if answered_new.insert(short) => Enqueued::Queued(id),
            (Some(&id), _) | (None, Some(&id)) => Enqueued::Duplicate(id),
            // Deleted by someone else between our two statements.
            (None, None) => {
                return Err(InsertError::AtCommit(sqlx::Error::RowNotFound));
            }
        };
        out.push(outcome);
    }
    Ok(out)
}

/// Claims up to `limit` due events, oldest due first.
///
/// The locking subquery is a MATERIALIZED CTE so that it runs exactly once: written as
/// `WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`, the planner may re-run it and
/// lock (and update) more than `n` rows. SKIP LOCKED makes concurrent claimers take
/// disjoint rows without waiting; the row lock re-checks the status after locking, so a row
/// another claimer just committed is not taken twice. `NO KEY UPDATE` is the lock the
/// UPDATE takes anyway (it changes no key), and unlike `FOR UPDATE` it does not collide
/// with the `KEY SHARE` locks of foreign-key checks from `action_runs` inserts.
async fn claim_due(pool: &PgPool, limit: usize, lease: Duration) -> Result<Vec<ClaimedEvent>, sqlx::Error> {
    let now = time::now();
    let rows = sqlx::query(
        "WITH due AS MATERIALIZED ( \
           SELECT id FROM events \
           WHERE status IN ('pending', 'retry') AND next_attempt_at <= $1 \
           ORDER BY next_attempt_at, id \
           LIMIT $3 \
           FOR NO KEY UPDATE SKIP LOCKED) \
         UPDATE events e SET status = 'processing', processing_started_at = $1, lease_until = $2, \
           attempt_count = e.attempt_count + 1 \
         FROM due WHERE e.id = due.id \
         RETURNING e.id, e.source, e.event_id, e.attempt_count, e.payload_json, \
           (SELECT json_agg(json_build_array(a.action, a.output_json)) FROM action_runs a \
            WHERE a.event_row_id = e.id AND a.status = 'done')::text AS done_runs",
    )
    .bind(&now)
    .bind(time::after(lease))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
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
                done_runs: parse_done_runs(r.try_get::<Option<String>, _>("done_runs")?.as_deref()),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// Reads `[[action, output_json], …]` as aggregated by the claim.
fn parse_done_runs(json: Option<&str>) -> Vec<DoneRun> {
    let Some(json) = json else { return Vec::new() };
    serde_json::from_str::<Vec<(Option<String>, Option<String>)>>(json)
        .unwrap_or_default()
        .into_iter()
        .map(|(action, output_json)| DoneRun {
            action: action.unwrap_or_default(),
            output_json,
        })
        .collect()
}

/// Ids and attempts of claims as two arrays, for `(id, attempt_count) IN (UNNEST …)`.
fn claim_arrays(claims: &[ClaimRef]) -> (Vec<i64>, Vec<i64>) {
    claims.iter().map(|c| (c.id, c.attempt)).unzip()
}

async fn renew_leases(pool: &PgPool, claims: &[ClaimRef], lease: Duration) -> Result<(), sqlx::Error> {
    let (ids, attempts) = claim_arrays(claims);
    sqlx::query(
        "UPDATE events SET lease_until = $1 \
         WHERE (id, attempt_count) IN (SELECT * FROM UNNEST($2::bigint[], $3::bigint[])) \
           AND status = 'processing'",
    )
    .bind(time::after(lease))
    .bind(&ids)
    .bind(&attempts)
    .execute(pool)
    .await?;
    Ok(())
}

async fn release_claims(pool: &PgPool, claims: &[ClaimRef]) -> Result<u64, sqlx::Error> {
    let (ids, attempts) = claim_arrays(claims);
    let done = sqlx::query(
        "UPDATE events SET status = 'retry', attempt_count = attempt_count - 1, next_attempt_at = $1, \
           lease_until = NULL \
         WHERE (id, attempt_count) IN (SELECT * FROM UNNEST($2::bigint[], $3::bigint[])) \
           AND status = 'processing'",
    )
    .bind(time::now())
    .bind(&ids)
    .bind(&attempts)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Concurrent reclaimers are safe: an UPDATE that waited for another one's row lock
/// re-checks `status = 'processing'` on the new row version and skips it.
async fn reclaim_expired_leases(pool: &PgPool, max_attempts: u32) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE events SET \
           status = CASE WHEN attempt_count >= $1 THEN 'error' ELSE 'retry' END, \
           processed_at = CASE WHEN attempt_count >= $1 THEN $2 ELSE processed_at END, \
           last_error = $3, next_attempt_at = $2, lease_until = NULL \
         WHERE status = 'processing' AND (lease_until IS NULL OR lease_until < $2)",
    )
    .bind(i64::from(max_attempts))
    .bind(time::now())
    .bind(LEASE_EXPIRED)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

async fn finish_attempt(pool: &PgPool, f: &Finish) -> Result<bool, sqlx::Error> {
    Ok(finish_batch(pool, std::slice::from_ref(f)).await?.remove(0))
}

/// Adds the `(source, event_id) → id` of each row.
fn collect_ids(rows: &[PgRow], into: &mut HashMap<(String, String), i64>) -> Result<(), sqlx::Error> {
    for row in rows {
        into.insert((row.try_get("source")?, row.try_get("event_id")?), row.try_get("id")?);
    }
    Ok(())
}

/// Most bytes of row data per statement when a batch is split ([`message_chunks`]), so
/// that each message fits one TLS record (16 KiB). sqlx leaves Nagle's algorithm on, and a
/// message spanning several records waits for delayed ACKs: measured with TLS on loopback,
/// finishes sent 256 to a statement drained 2.3–2.9k events/s (12.6k/s without TLS), and
/// enqueues of up to 512 rows to a statement ingested 5.2–5.5k req/s (9.6–10.1k chunked).
const MESSAGE_BYTES: usize = 12 * 1024;

/// Splits `items` into consecutive runs of at most [`MESSAGE_BYTES`] by `size` (one item
/// when a single item is larger), in order.
fn message_chunks<T>(items: &[T], size: impl Fn(&T) -> usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|item| {
                bytes += 100 + size(item);
                bytes <= MESSAGE_BYTES
            })
            .count()
            .max(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// Records many outcomes in one transaction, a few statements in all rather than two per
/// outcome: per chunk of outcomes ([`message_chunks`]), one UPDATE of the events from
/// arrays (each fenced by its claim), then one upsert of the action runs of the events it
/// applied to. A statement per outcome cost a round trip and an executor start-up each,
/// which dominated PostgreSQL's CPU in the drain.
async fn finish_batch(pool: &PgPool, finishes: &[Finish]) -> Result<Vec<bool>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut applied = Vec::with_capacity(finishes.len());
    for chunk in message_chunks(finishes, finish_bytes) {
        applied.extend(finish_chunk(&mut tx, chunk).await?);
    }
    tx.commit().await?;
    Ok(applied)
}

/// Roughly what an outcome adds to the statements' messages.
fn finish_bytes(f: &Finish) -> usize {
    let outcome = match &f.outcome {
        Outcome::Done { result_json } => result_json.len(),
        Outcome::Retry { error, .. } | Outcome::Failed { error } => error.len(),
    };
    let run = f.action_run.as_ref().map_or(0, |r| {
        r.input_json.len() + r.output_json.as_ref().map_or(0, String::len) + r.error.as_ref().map_or(0, String::len)
    });
    outcome + run
}

/// [`finish_batch`]'s two statements for one chunk, inside its transaction.
async fn finish_chunk(tx: &mut PgConnection, finishes: &[Finish]) -> Result<Vec<bool>, sqlx::Error> {
    let now = time::now();
    let mut ids = Vec::with_capacity(finishes.len());
    let mut attempts = Vec::with_capacity(finishes.len());
    let mut statuses = Vec::with_capacity(finishes.len());
    let mut processed_at: Vec<Option<&str>> = Vec::with_capacity(finishes.len());
    let mut results: Vec<Option<&str>> = Vec::with_capacity(finishes.len());
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(finishes.len());
    let mut next_attempt_at: Vec<Option<&str>> = Vec::with_capacity(finishes.len());
    for f in finishes {
        ids.push(f.claim.id);
        attempts.push(f.claim.attempt);
        // NULL keeps the column as it is (see the UPDATE).
        let (status, at, result, error, next) = match &f.outcome {
            Outcome::Done { result_json } => ("done", Some(now.as_str()), Some(result_json.as_str()), None, None),
            Outcome::Retry { error, next_attempt_at } => (
                "retry",
                None,
                None,
                Some(error.as_str()),
                Some(next_attempt_at.as_str()),
            ),
            Outcome::Failed { error } => ("error", Some(now.as_str()), None, Some(error.as_str()), None),
        };
        statuses.push(status);
        processed_at.push(at);
        results.push(result);
        errors.push(error);
        next_attempt_at.push(next);
    }
    let applied: HashSet<(i64, i64)> = sqlx::query_as(
        "UPDATE events e SET status = u.status, \
           processed_at = COALESCE(u.processed_at, e.processed_at), \
           result_json = CASE WHEN u.status = 'done' THEN u.result_json ELSE e.result_json END, \
           last_error = u.last_error, \
           next_attempt_at = COALESCE(u.next_attempt_at, e.next_attempt_at), \
           lease_until = NULL \
         FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
           AS u(id, attempt, status, processed_at, result_json, last_error, next_attempt_at) \
         WHERE e.id = u.id AND e.attempt_count = u.attempt AND e.status = 'processing' \
         RETURNING e.id, e.attempt_count",
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(&statuses)
    .bind(&processed_at)
    .bind(&results)
    .bind(&errors)
    .bind(&next_attempt_at)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let applied: Vec<bool> = finishes
        .iter()
        .map(|f| applied.contains(&(f.claim.id, f.claim.attempt)))
        .collect();
    // A lost claim's action run is not written: the new owner will write its own. At most
    // one claim of an event applies, so no (event, action) pair comes twice.
    let runs: Vec<&ActionRunRecord> = finishes
        .iter()
        .zip(&applied)
        .filter_map(|(f, ok)| f.action_run.as_ref().filter(|_| *ok))
        .collect();
    if !runs.is_empty() {
        upsert_action_runs(tx, &runs).await?;
    }
    Ok(applied)
}

/// Inserts or updates the runs in one statement (one per `(event_row_id, action)`).
async fn upsert_action_runs(conn: &mut PgConnection, runs: &[&ActionRunRecord]) -> Result<(), sqlx::Error> {
    let column = |f: fn(&ActionRunRecord) -> Option<&str>| runs.iter().map(|r| f(r)).collect::<Vec<_>>();
    let event_row_ids: Vec<i64> = runs.iter().map(|r| r.event_row_id).collect();
    sqlx::query(
        "INSERT INTO action_runs (event_row_id, action, started_at, finished_at, status, provider, handler_mode, \
           handler_target, input_json, output_json, error) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]) \
         ON CONFLICT (event_row_id, action) DO UPDATE SET started_at = EXCLUDED.started_at, \
           finished_at = EXCLUDED.finished_at, status = EXCLUDED.status, provider = EXCLUDED.provider, \
           handler_mode = EXCLUDED.handler_mode, handler_target = EXCLUDED.handler_target, \
           input_json = EXCLUDED.input_json, output_json = EXCLUDED.output_json, error = EXCLUDED.error",
    )
    .bind(&event_row_ids)
    .bind(column(|r| Some(&r.action)))
    .bind(column(|r| Some(&r.started_at)))
    .bind(column(|r| r.finished_at.as_deref()))
    .bind(column(|r| Some(&r.status)))
    .bind(column(|r| Some(&r.provider)))
    .bind(column(|r| Some(&r.handler_mode)))
    .bind(column(|r| r.handler_target.as_deref()))
    .bind(column(|r| Some(&r.input_json)))
    .bind(column(|r| r.output_json.as_deref()))
    .bind(column(|r| r.error.as_deref()))
    .execute(conn)
    .await?;
    Ok(())
}

async fn start_run(pool: &PgPool, run: &ActionRunRecord) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    upsert_action_runs(&mut conn, &[run]).await
}

async fn replay_event(pool: &PgPool, row_id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE events SET status = 'pending', attempt_count = 0, next_attempt_at = $1, \
         last_error = NULL, processed_at = NULL, lease_until = NULL \
         WHERE id = $2 AND status != 'processing'",
    )
    .bind(time::now())
    .bind(row_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// All mappings and rules in one transaction; a failure before COMMIT leaves nothing.
async fn apply_changes(pool: &PgPool, changes: &RoutingChanges) -> Result<(), sqlx::Error> {
    let now = time::now();
    let mut tx = pool.begin().await?;
    for m in &changes.mappings {
        sqlx::query(
            "INSERT INTO provider_mappings (provider, action, handler_mode, handler_target, enabled, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (provider) DO UPDATE SET action = EXCLUDED.action, \
             handler_mode = EXCLUDED.handler_mode, handler_target = EXCLUDED.handler_target, \
             enabled = EXCLUDED.enabled, updated_at = EXCLUDED.updated_at",
        )
        .bind(&m.provider)
        .bind(&m.action)
        .bind(&m.handler_mode)
        .bind(&m.handler_target)
        .bind(i64::from(m.enabled))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    for r in &changes.rules {
        sqlx::query(
            "INSERT INTO routing_rules (provider, name, priority, conditions_json, action, handler_mode, \
             handler_target, enabled, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (provider, name) DO UPDATE SET priority = EXCLUDED.priority, \
             conditions_json = EXCLUDED.conditions_json, action = EXCLUDED.action, \
             handler_mode = EXCLUDED.handler_mode, handler_target = EXCLUDED.handler_target, \
             enabled = EXCLUDED.enabled, updated_at = EXCLUDED.updated_at",
        )
        .bind(&r.provider)
        .bind(&r.name)
        .bind(r.priority)
        .bind(&r.conditions_json)
        .bind(&r.action)
        .bind(&r.handler_mode)
        .bind(&r.handler_target)
        .bind(i64::from(r.enabled))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Keeps a LISTEN connection open for the life of the store, reconnecting with back-off.
async fn listen_loop(options: PgConnectOptions, schema: String, wake: Arc<Notify>) {
    // A private one-connection pool: PgListener uses it to reconnect, and the LISTEN
    // connection never takes a slot from the main pool.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options);
    let mut backoff = LISTEN_BACKOFF_MIN;
    loop {
        let error = listen_session(&pool, &schema, &wake, &mut backoff).await;
        tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64,
            "LISTEN connection to PostgreSQL failed; reconnecting (workers poll meanwhile)");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// One LISTEN session: returns the error that ended it.
async fn listen_session(pool: &PgPool, schema: &str, wake: &Notify, backoff: &mut Duration) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen(CHANNEL).await {
        return e;
    }
    tracing::info!(channel = CHANNEL, "listening for work queued by other instances");
    *backoff = LISTEN_BACKOFF_MIN;
    // Notifications sent while we were not listening are lost: make the worker re-scan.
    wake.notify_one();
    loop {
        match listener.try_recv().await {
            // notify_one keeps one permit when the worker is busy: a burst is one re-scan.
            Ok(Some(n)) if n.payload().is_empty() || n.payload() == schema => wake.notify_one(),
            Ok(Some(_)) => {}
            // The connection dropped and PgListener has already reconnected and re-LISTENed.
            Ok(None) => {
                tracing::info!(channel = CHANNEL, "LISTEN connection re-established");
                wake.notify_one();
            }
            Err(e) => return e,
        }
    }
}

fn rules_from_rows(rows: &[PgRow]) -> Result<Vec<Rule>, sqlx::Error> {
    let mut rules = Vec::with_capacity(rows.len());
    for r in rows {
        if let Some(rule) = rows::rule(r)? {
            rules.push(rule);
        }
    }
    Ok(rules)
}

// Column lists as macros so that each statement is one `concat!`ed `&'static str`.
macro_rules! rule_select {
    () => {
        "SELECT id, provider, name, priority, conditions_json, action, handler_mode, handler_target, enabled \
         FROM routing_rules"
    };
}
macro_rules! mapping_select {
    () => {
        "SELECT provider, action, handler_mode, handler_target, enabled FROM provider_mappings"
    };
}
macro_rules! event_select {
    () => {
        "SELECT id, source, event_id, received_at, status, attempt_count, next_attempt_at, \
         processing_started_at, processed_at, payload_json, result_json, last_error FROM events"
    };
}
macro_rules! action_run_select {
    () => {
        "SELECT id, event_row_id, started_at, finished_at, status, provider, action, handler_mode, \
         handler_target, input_json, output_json, error FROM action_runs"
    };
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn enqueue(&self, event: NewEvent) -> StoreFuture<'_, Enqueued> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.enqueue_tx
                .send(EnqueueRequest { event, reply })
                .await
                .map_err(|_| StoreError::WriterGone)?;
            rx.await.map_err(|_| StoreError::WriterGone)?
        })
    }

    fn claim(&self, limit: usize, lease: Duration) -> StoreFuture<'_, Vec<ClaimedEvent>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            Ok(retry_lost("claim", || claim_due(&self.pool, limit, lease)).await?)
        })
    }

    fn renew(&self, claims: Vec<ClaimRef>, lease: Duration) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if claims.is_empty() {
                return Ok(());
            }
            Ok(retry_lost("renew", || renew_leases(&self.pool, &claims, lease)).await?)
        })
    }

    fn finish(&self, finish: Finish) -> StoreFuture<'_, bool> {
        // A retry after a COMMIT whose reply was lost finds the event no longer
        // `processing` and answers false; the outcome stored is still this one.
        Box::pin(async move { Ok(retry_lost("finish", || finish_attempt(&self.pool, &finish)).await?) })
    }

    fn finish_many(&self, finishes: Vec<Finish>) -> StoreFuture<'_, Vec<bool>> {
        // Safe to retry whole: the transaction either committed nothing or everything,
        // and each finish is fenced by its claim.
        Box::pin(async move { Ok(retry_lost("finish", || finish_batch(&self.pool, &finishes)).await?) })
    }

    fn release(&self, claims: Vec<ClaimRef>) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            if claims.is_empty() {
                return Ok(0);
            }
            let n = retry_lost("release", || release_claims(&self.pool, &claims)).await?;
            if n > 0 {
                self.notify().await;
            }
            Ok(n)
        })
    }

    fn reclaim_expired(&self, max_attempts: u32) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let n = retry_lost("reclaim", || reclaim_expired_leases(&self.pool, max_attempts)).await?;
            if n > 0 {
                self.notify().await;
            }
            Ok(n)
        })
    }

    fn start_action_run(&self, run: ActionRunRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move { Ok(retry_lost("start action run", || start_run(&self.pool, &run)).await?) })
    }

    fn action_run(&self, event_row_id: i64, action: &str) -> StoreFuture<'_, Option<ActionRunRow>> {
        let action = action.to_string();
        Box::pin(async move {
            let q = concat!(action_run_select!(), " WHERE event_row_id = $1 AND action = $2");
            let row = retry_lost("read action run", || {
                sqlx::query(q)
                    .bind(event_row_id)
                    .bind(&action)
                    .fetch_optional(&self.pool)
            })
            .await?;
            Ok(row.as_ref().map(rows::action_run).transpose()?)
        })
    }

    fn event(&self, row_id: i64) -> StoreFuture<'_, Option<EventRow>> {
        Box::pin(async move {
            let q = concat!(event_select!(), " WHERE id = $1");
            let row = retry_lost("read event", || sqlx::query(q).bind(row_id).fetch_optional(&self.pool)).await?;
            Ok(row.as_ref().map(rows::event).transpose()?)
        })
    }

    fn action_runs(&self, event_row_id: i64) -> StoreFuture<'_, Vec<ActionRunRow>> {
        Box::pin(async move {
            let q = concat!(action_run_select!(), " WHERE event_row_id = $1 ORDER BY id DESC");
            let rows = retry_lost("read action runs", || {
                sqlx::query(q).bind(event_row_id).fetch_all(&self.pool)
            })
            .await?;
            Ok(rows.iter().map(rows::action_run).collect::<Result<_, _>>()?)
        })
    }

    fn list_events(&self, status: Option<String>, limit: i64) -> StoreFuture<'_, Vec<EventRow>> {
        Box::pin(async move {
            // LIMIT NULL is no limit, like SQLite's negative LIMIT (PostgreSQL refuses negatives).
            let limit = (limit >= 0).then_some(limit);
            let rows = match &status {
                Some(s) => {
                    let q = concat!(event_select!(), " WHERE status = $1 ORDER BY id DESC LIMIT $2");
                    retry_lost("list events", || {
                        sqlx::query(q).bind(s).bind(limit).fetch_all(&self.pool)
                    })
                    .await?
                }
                None => {
                    let q = concat!(event_select!(), " ORDER BY id DESC LIMIT $1");
                    retry_lost("list events", || sqlx::query(q).bind(limit).fetch_all(&self.pool)).await?
                }
            };
            Ok(rows.iter().map(rows::event).collect::<Result<_, _>>()?)
        })
    }

    fn replay(&self, row_id: i64) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let queued = retry_lost("replay", || replay_event(&self.pool, row_id)).await?;
            if queued {
                self.notify().await;
            }
            Ok(queued)
        })
    }

    fn routing_version(&self) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            let v: Option<i64> = retry_lost("read routing version", || {
                sqlx::query_scalar("SELECT value FROM switchyard_meta WHERE key = 'routing_version'")
                    .fetch_optional(&self.pool)
            })
            .await?;
            Ok(v.unwrap_or(0))
        })
    }

    fn routing_tables(&self) -> StoreFuture<'_, RoutingTables> {
        Box::pin(async move {
            let rules = retry_lost("read rules", || sqlx::query(rule_select!()).fetch_all(&self.pool)).await?;
            let mappings = retry_lost("read mappings", || sqlx::query(mapping_select!()).fetch_all(&self.pool)).await?;
            Ok(RoutingTables {
                rules: rules_from_rows(&rules)?,
                mappings: mappings.iter().map(rows::mapping).collect::<Result<_, _>>()?,
            })
        })
    }

    fn mapping(&self, provider: &str) -> StoreFuture<'_, Option<Mapping>> {
        let provider = provider.to_string();
        Box::pin(async move {
            let q = concat!(mapping_select!(), " WHERE provider = $1");
            let row = retry_lost("read mapping", || {
                sqlx::query(q).bind(&provider).fetch_optional(&self.pool)
            })
            .await?;
            Ok(row.as_ref().map(rows::mapping).transpose()?)
        })
    }

    fn rules(&self, provider: &str) -> StoreFuture<'_, Vec<Rule>> {
        let provider = provider.to_string();
        Box::pin(async move {
            let q = concat!(rule_select!(), " WHERE provider = $1 ORDER BY priority, id");
            let rows = retry_lost("read rules", || sqlx::query(q).bind(&provider).fetch_all(&self.pool)).await?;
            Ok(rules_from_rows(&rows)?)
        })
    }

    fn apply(&self, changes: RoutingChanges) -> StoreFuture<'_, ()> {
        // Retrying after a lost connection is safe: the upserts are idempotent.
        Box::pin(async move { Ok(retry_lost("apply routing changes", || apply_changes(&self.pool, &changes)).await?) })
    }

    fn external_wake(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.listener.get_or_init(|| {
                tokio::spawn(listen_loop(
                    self.listen_options.clone(),
                    self.schema.clone(),
                    self.wake.clone(),
                ))
            });
            self.wake.notified().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_chunks_keep_order_and_bound_each_chunk() {
        let sizes = [5000, 5000, 1000, 20000, 10, 10, 3000];
        let chunks: Vec<Vec<usize>> = message_chunks(&sizes, |s| *s).map(<[usize]>::to_vec).collect();
        assert_eq!(chunks, [vec![5000, 5000, 1000], vec![20000], vec![10, 10, 3000]]);
        assert_eq!(message_chunks(&[] as &[usize], |s| *s).count(), 0);
    }
}
