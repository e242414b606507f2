//! Connecting (with retries while the server starts), migrating, and retrying an
//! operation whose connection was lost.

use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use tokio::sync::{Notify, mpsc};

use super::claim::ClaimCursor;
use super::enqueue::enqueue_loop;
use super::{PgStore, StoreError, migrator};

/// The schema, oldest first (embedded in the binary).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial layout",
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        10,
        "schedules",
        include_str!("../../../migrations/postgres/0010_schedules.sql"),
    ),
    (
        11,
        "operator api",
        include_str!("../../../migrations/postgres/0011_operator_api.sql"),
    ),
    (
        12,
        "partial listing indexes",
        include_str!("../../../migrations/postgres/0012_partial_listing_indexes.sql"),
    ),
    (
        20,
        "narrow queue",
        include_str!("../../../migrations/postgres/0020_narrow_queue.sql"),
    ),
    (
        21,
        "rule continue",
        include_str!("../../../migrations/postgres/0021_rule_continue.sql"),
    ),
    (
        22,
        "llm usage",
        include_str!("../../../migrations/postgres/0022_llm_usage.sql"),
    ),
    (
        23,
        "event attempts",
        include_str!("../../../migrations/postgres/0023_event_attempts.sql"),
    ),
    (
        24,
        "schedule active since",
        include_str!("../../../migrations/postgres/0024_schedule_active_since.sql"),
    ),
    (
        25,
        "revoked dashboard sessions",
        include_str!("../../../migrations/postgres/0025_revoked_sessions.sql"),
    ),
    (
        26,
        "action run attempts",
        include_str!("../../../migrations/postgres/0026_action_run_attempts.sql"),
    ),
    (
        28,
        "cascade by trigger",
        include_str!("../../../migrations/postgres/0028_cascade_by_trigger.sql"),
    ),
    (
        30,
        "flow control",
        include_str!("../../../migrations/postgres/0030_flow_control.sql"),
    ),
    (
        31,
        "finished index with flow statuses",
        include_str!("../../../migrations/postgres/0031_finished_index_flow_statuses.sql"),
    ),
    (
        33,
        "hot claims",
        include_str!("../../../migrations/postgres/0033_hot_claims.sql"),
    ),
    (
        34,
        "one attempts index",
        include_str!("../../../migrations/postgres/0034_one_attempts_index.sql"),
    ),
];

/// Enqueue batches in flight at once: one runs while the next gathers the requests that
/// arrive meanwhile. With five (half the default pool), batches were a third as large and
/// their inserts met on the same right-most index pages: ingest ran 19.3k req/s at 32–40 µs
/// of PostgreSQL's CPU per request, against 23.6k at 24–29 µs with two (docs/PERFORMANCE.md).
const ENQUEUE_PARALLELISM: usize = 2;

/// `application_name` of our connections unless the URL sets one (visible in `pg_stat_activity`).
const APPLICATION_NAME: &str = "switchyard";

/// Connection settings.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections in the pool (`DATABASE_POOL_SIZE`); the listener uses one more.
    pub pool_size: u32,
    /// `statement_timeout` of every pooled connection (`DATABASE_STATEMENT_TIMEOUT_SECONDS`).
    pub statement_timeout: Duration,
    /// How long start-up keeps retrying an unreachable server (`DATABASE_CONNECT_TIMEOUT_SECONDS`).
    pub connect_timeout: Duration,
    /// For commands that only read: refuse a database without switchyard's tables
    /// instead of creating them.
    pub existing_only: bool,
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
        let base = connect_options(url)?;
        let pooled = base
            .clone()
            .options([("statement_timeout", options.statement_timeout.as_millis())])
            // Short statements over a few hundred rows: JIT compiling them (triggered by the
            // planner's cost estimates on tables without fresh statistics) cost ~30 ms each,
            // a hundred times the statement (docs/PERFORMANCE.md).
            .options([("jit", "off")]);

        let mut first = migrated_connection(&base, options).await?;
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
            .connect_lazy_with(pooled.clone());
        // The claim must walk `event_queue_due` in order and stop after its batch. Without
        // statistics (a queue filled faster than autovacuum analyzes it, as any burst is)
        // the planner takes the due rows for a few dozen and reads them all with a bitmap
        // scan, then sorts them: every claim of a 50,000-event drain sorted what was left
        // of it (docs/PERFORMANCE.md). Its own connection plans with neither, so the
        // ordered index scan is the plan whatever the statistics say.
        let claims = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .test_before_acquire(true)
            .acquire_timeout(options.statement_timeout.max(Duration::from_secs(1)))
            .connect_lazy_with(pooled.options([("enable_sort", "off"), ("enable_bitmapscan", "off")]));

        let (enqueue_tx, enqueue_rx) = mpsc::channel(4096);
        // Half the pool at most, so claims and finishes always find a connection.
        let parallel = ENQUEUE_PARALLELISM.min(options.pool_size as usize / 2).max(1);
        tokio::spawn(enqueue_loop(pool.clone(), enqueue_rx, parallel));

        Ok(PgStore {
            pool,
            claims,
            enqueue_tx,
            listen_options: base,
            schema,
            wake: Arc::new(Notify::new()),
            schedules_wake: Arc::new(Notify::new()),
            listener: OnceLock::new(),
            claim_cursor: ClaimCursor::default(),
            claimed_version: std::sync::Mutex::default(),
            claim_times: Default::default(),
        })
    }
}

/// The URL's connection options, named `switchyard` in `pg_stat_activity` unless it says otherwise.
pub(crate) fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let base = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Config(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")))?;
    Ok(if base.get_application_name().is_none() {
        base.application_name(APPLICATION_NAME)
    } else {
        base
    })
}

/// One connection (retrying an unreachable server up to `connect_timeout`) to a migrated
/// database; with `existing_only`, a database without switchyard's tables is refused first.
pub(crate) async fn migrated_connection(
    base: &PgConnectOptions,
    options: &PgOptions,
) -> Result<PgConnection, StoreError> {
    let mut conn = connect_with_retry(base, options.connect_timeout).await?;
    if options.existing_only {
        require_tables(&mut conn, base).await?;
    }
    migrate(&mut conn).await.map_err(|e| explain_migration(e, base))?;
    Ok(conn)
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

/// Refuses a database where switchyard's `events` table is not visible.
async fn require_tables(conn: &mut PgConnection, options: &PgConnectOptions) -> Result<(), StoreError> {
    let found: bool = sqlx::query_scalar("SELECT to_regclass('events') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if found {
        return Ok(());
    }
    Err(StoreError::Config(format!(
        "no switchyard tables in PostgreSQL database {} (DATABASE_URL); run `switchyard serve` against it first, \
         or check DATABASE_URL",
        describe(options)
    )))
}

/// A migration refused for lack of privileges (SQLSTATE 42501) becomes one message naming
/// the privilege and the fix; other failures keep the driver's message and name the database.
fn explain_migration(e: StoreError, options: &PgConnectOptions) -> StoreError {
    let target = describe(options);
    let database_error = match &e {
        StoreError::Migrate(sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(db)))
        | StoreError::Migrate(sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(db), _))
        | StoreError::Database(sqlx::Error::Database(db)) => Some(db),
        _ => None,
    };
    match database_error {
        Some(db) if db.code().as_deref() == Some("42501") => StoreError::Config(format!(
            "PostgreSQL role '{}' lacks the CREATE privilege on the schema switchyard migrates ({}) in {target} \
             (DATABASE_URL): run `GRANT CREATE ON SCHEMA public TO {}` as the schema owner, or make the role the \
             owner of the database; see docs/POSTGRES.md",
            options.get_username(),
            db.message(),
            options.get_username()
        )),
        _ => StoreError::Config(format!("database migration failed on {target} (DATABASE_URL): {e}")),
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
