//! The queue and routing tables: one [`Store`] trait, two backends (SQLite, PostgreSQL).
//!
//! All SQL of the program lives below this module. Both backends keep the seed's tables
//! and columns (`events`, `action_runs`, `provider_mappings`, `routing_rules`) and add
//! only columns and tables.

mod action_states;
pub mod attempts;
mod claim_times;
pub mod copy;
pub(crate) mod counts;
pub mod flow;
mod query;
pub(crate) mod rows;
pub mod run_input;
mod schedule;
mod series;
pub mod spend;
pub mod stored_payload;
pub mod stored_result;
mod types;

/// The `SET` term of both backends' action-run upsert that counts the run's attempt
/// (CONTRACT §12): +1 unless the row is this very run's start (`running`, same
/// `started_at`), which counted it already. So a run counts once whether its handler
/// finished (start and finish rows), crashed (start row only) or never wrote a start row
/// (noop, or the start write failed).
macro_rules! count_run_attempt {
    () => {
        "attempts = action_runs.attempts + CASE WHEN action_runs.status = 'running' \
           AND action_runs.started_at = excluded.started_at THEN 0 ELSE 1 END"
    };
}
pub(crate) use count_run_attempt;

pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use action_states::ActionState;
pub use attempts::AttemptRow;
pub use counts::{QueueDepth, Stats};
pub use query::{
    Cursor, EventFilter, EventPage, EventSummary, FILTER_KEYS, FilterError, MAX_FILTER_LEN, PURGEABLE, STATUSES,
    Transition,
};
pub use schedule::*;
pub use series::MinuteCounts;
pub use spend::{RunUsage, SpendBy, SpendCell, SpendGroup, TopRun, UsageRecord};
pub use types::*;

use std::path::PathBuf;

use crate::domain::{EventStatus, SqliteSynchronous};

/// A boxed future returned by store methods (keeps the trait usable as `dyn Store`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A shared handle to whichever backend is configured.
pub type Db = Arc<dyn Store>;

/// Everything the service needs from its database.
///
/// Claims are short transactions that set a lease (`lease_until`); nothing holds a
/// transaction open while a handler runs. `attempt_count` is incremented by the claim and
/// doubles as a fencing token: [`Store::finish`] only applies while the event is still
/// `processing` under the same attempt, so a worker whose lease was taken over cannot
/// overwrite the new owner's outcome.
pub trait Store: Send + Sync + 'static {
    /// Which backend this is (`sqlite` or `postgres`), for logs and benchmarks.
    fn backend(&self) -> &'static str;

    /// Durably inserts an event unless `(source, event_id)` exists; returns after commit.
    fn enqueue(&self, event: NewEvent) -> StoreFuture<'_, Enqueued>;

    /// Claims up to `limit` due events (oldest due first) with a lease of `lease`.
    fn claim(&self, limit: usize, lease: Duration) -> StoreFuture<'_, Vec<ClaimedEvent>>;

    /// Extends the lease of events this worker still holds.
    fn renew(&self, claims: Vec<ClaimRef>, lease: Duration) -> StoreFuture<'_, ()>;

    /// Records the outcome of one attempt (and its action run); false when the claim was lost.
    fn finish(&self, finish: Finish) -> StoreFuture<'_, bool>;

    /// How many [`Store::finish_many`] calls the worker keeps in flight at once. One on
    /// SQLite, whose single writer takes them one at a time anyway; PostgreSQL runs each on
    /// a connection of its own, and one at a time left the drain paced by one server
    /// process while the other core idled (docs/PERFORMANCE.md).
    fn finish_parallelism(&self) -> usize {
        1
    }

    /// Most events the worker takes in one claim while its handlers are fast, and stores
    /// in one [`Store::finish_many`] (on SQLite 256 drained 13–17 % faster than 64: the
    /// writer's transactions are shared among more events). PostgreSQL's claim is a round
    /// trip and a commit waiting for the WAL flush, paid once per claim, and takes more
    /// (docs/PERFORMANCE.md).
    fn claim_batch(&self) -> usize {
        256
    }

    /// Records many outcomes; the answer says, per finish, whether its claim still held.
    fn finish_many(&self, finishes: Vec<Finish>) -> StoreFuture<'_, Vec<bool>> {
        Box::pin(async move {
            let mut applied = Vec::with_capacity(finishes.len());
            for f in finishes {
                applied.push(self.finish(f).await?);
            }
            Ok(applied)
        })
    }

    /// Gives claims back without counting the attempt (graceful shutdown).
    fn release(&self, claims: Vec<ClaimRef>) -> StoreFuture<'_, u64>;

    /// Returns events whose lease expired to `retry` (or `error` when out of attempts);
    /// the answer names them, in row id order.
    fn reclaim_expired(&self, max_attempts: u32) -> StoreFuture<'_, Vec<Reclaimed>>;

    /// Records that a handler started (status `running`), so a long run is visible.
    fn start_action_run(&self, run: ActionRunRecord) -> StoreFuture<'_, ()>;

    /// The action run of `(event_row_id, action)`, if any.
    fn action_run(&self, event_row_id: i64, action: &str) -> StoreFuture<'_, Option<ActionRunRow>>;

    /// One event by row id.
    fn event(&self, row_id: i64) -> StoreFuture<'_, Option<EventRow>>;

    /// Action runs of an event, newest first.
    fn action_runs(&self, event_row_id: i64) -> StoreFuture<'_, Vec<ActionRunRow>>;

    /// Every attempt of an event, oldest first, across replays.
    fn attempts(&self, event_row_id: i64) -> StoreFuture<'_, Vec<AttemptRow>>;

    /// A page of events matching `filter`, newest first (by `received_at`, then id), after `cursor`.
    fn list_page(&self, filter: EventFilter, cursor: Option<Cursor>, limit: u32) -> StoreFuture<'_, EventPage>;

    /// Puts an event back to `pending` now, with a fresh attempt budget; `force` makes its
    /// next attempt rerun actions that already ran to `done`. Refused while `processing`.
    fn replay(&self, row_id: i64, force: bool) -> StoreFuture<'_, Transition>;

    /// Replays every event matching `filter` (never one in `processing`); returns how many.
    fn replay_matching(&self, filter: EventFilter) -> StoreFuture<'_, u64>;

    /// Cancels a `pending`, `retry`, `held` or `waiting` event (status `cancelled`: never
    /// claimed again); a waiting one leaves flow control's lines (CONTRACT §13).
    fn cancel(&self, row_id: i64) -> StoreFuture<'_, Transition>;

    /// Counts by status, the oldest due event's age, recent done/failed rates.
    fn stats(&self) -> StoreFuture<'_, Stats>;

    /// The queue's depth (pending, retry, processing, held, waiting) and oldest due time; cheap.
    fn queue_depth(&self) -> StoreFuture<'_, QueueDepth>;

    /// Events received and finished per minute over the `minutes` minutes ending with
    /// `now`'s, oldest first, empty minutes included (the dashboard's chart).
    fn per_minute(&self, now: chrono::DateTime<chrono::Utc>, minutes: u32) -> StoreFuture<'_, Vec<MinuteCounts>>;

    /// Deletes up to `limit` events in `status` finished before `before` (stored timestamp
    /// text), with their action runs; returns how many. Callers loop, pausing between batches.
    fn purge_batch(&self, status: EventStatus, before: &str, limit: usize) -> StoreFuture<'_, u64>;

    /// Succeeds when the database answers (readiness).
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// A number that changes whenever mappings or rules change (by anyone).
    fn routing_version(&self) -> StoreFuture<'_, i64>;

    /// All enabled-or-not rules and mappings (the router filters).
    fn routing_tables(&self) -> StoreFuture<'_, RoutingTables>;

    /// The mapping of a provider, enabled or not.
    fn mapping(&self, provider: &str) -> StoreFuture<'_, Option<Mapping>>;

    /// Rules of a provider in evaluation order (priority, then id).
    fn rules(&self, provider: &str) -> StoreFuture<'_, Vec<Rule>>;

    /// Deletes the rule `name` of `provider`; false when there was none.
    fn delete_rule(&self, provider: &str, name: &str) -> StoreFuture<'_, bool>;

    /// Applies mappings, rules and schedules in one transaction (all or nothing).
    fn apply(&self, changes: RoutingChanges) -> StoreFuture<'_, ()>;

    /// Every schedule, enabled or not, with the last tick enqueued for it.
    fn schedules(&self) -> StoreFuture<'_, Vec<StoredSchedule>>;

    /// A number that changes whenever a schedule's definition changes (by anyone).
    fn schedules_version(&self) -> StoreFuture<'_, i64>;

    /// Moves each job's `last_scheduled_at` up to its recorded tick (never back).
    fn record_ticks(&self, ticks: Vec<TickRecord>) -> StoreFuture<'_, ()>;

    /// Ends the dashboard session `nonce` (valid until `expires_at`, Unix seconds) for every
    /// process on this database; also forgets sessions that have expired.
    fn revoke_session(&self, nonce: &str, expires_at: i64) -> StoreFuture<'_, ()>;

    /// Whether the dashboard session `nonce` was ended by a logout.
    fn session_revoked(&self, nonce: &str) -> StoreFuture<'_, bool>;
    /// Records an agent or `llm` attempt's usage: a row of the spend ledger, and the run's
    /// latest usage and transcript.
    fn record_usage(&self, record: UsageRecord) -> StoreFuture<'_, ()>;

    /// The recorded usage of an event's action runs, newest run first.
    fn run_usage(&self, event_row_id: i64) -> StoreFuture<'_, Vec<RunUsage>>;

    /// An action run's transcript: `None` when the event has no such run, `Some(None)` when
    /// the run has no transcript.
    fn transcript(&self, event_row_id: i64, run_id: i64) -> StoreFuture<'_, Option<Option<String>>>;

    /// Spend since `since` (stored timestamp text) by UTC day, action and model.
    fn spend_cells(&self, since: String) -> StoreFuture<'_, Vec<SpendCell>>;

    /// The `limit` costliest attempts since `since`.
    fn top_runs(&self, since: String, limit: u32) -> StoreFuture<'_, Vec<TopRun>>;

    /// The budget of `action`, if one was set.
    fn budget(&self, action: &str) -> StoreFuture<'_, Option<crate::domain::Budget>>;

    /// Every action's budget, by action.
    fn budgets(&self) -> StoreFuture<'_, Vec<crate::domain::ActionBudget>>;

    /// Recorded spend since `since` (stored timestamp text), of `action` or of all.
    fn spent_since(&self, since: String, action: Option<String>) -> StoreFuture<'_, f64>;

    /// What agent and llm runs in flight may still cost (their actions' `per_run_usd`):
    /// runs started since `since`, of events other than `except_event`, of `action` or all.
    fn reserved(&self, since: String, except_event: i64, action: Option<String>) -> StoreFuture<'_, f64>;

    /// Holds a claimed event until `until` (status `held`, `last_error` the reason), giving
    /// its attempt back; false when the claim was lost.
    fn hold(&self, claim: ClaimRef, reason: String, until: String) -> StoreFuture<'_, bool>;

    /// Makes held events whose `next_attempt_at` has come `pending` again; returns how many.
    fn release_held(&self) -> StoreFuture<'_, u64>;

    /// Flow admission (CONTRACT §13) of a claimed event's actions that have a flow, in one
    /// transaction: each takes a slot, or the event waits or ends ([`flow::FlowVerdict`]).
    fn flow_admit(&self, ask: flow::FlowAsk) -> StoreFuture<'_, flow::FlowVerdict>;

    /// Frees the slots event `event_row_id`'s runs hold and wakes the oldest waiter each
    /// freed slot lets start; returns how many it woke.
    fn flow_release(&self, event_row_id: i64) -> StoreFuture<'_, u64>;

    /// Ends a claimed event whose run was cancelled (`on_conflict: cancel_running`):
    /// status `superseded`, the result naming event `by`; false when the claim was lost.
    fn flow_supersede_running(&self, claim: ClaimRef, action: String, by: i64) -> StoreFuture<'_, bool>;

    /// Which of `running` (row ids) were asked to stop, and by which event.
    fn flow_cancels(&self, running: Vec<i64>) -> StoreFuture<'_, Vec<(i64, i64)>>;

    /// Pauses `pool` after a rate limit: until `retry_after` from now, else for 5 s doubling
    /// with each pause in a row up to 5 min; returns the end (stored timestamp text).
    fn flow_pause(&self, pool: String, retry_after: Option<Duration>) -> StoreFuture<'_, String>;

    /// A run in `pool` succeeded: the next pause starts again at 5 s.
    fn flow_pool_ok(&self, pool: String) -> StoreFuture<'_, ()>;

    /// Housekeeping: frees slots of events no longer running (a process died) and wakes
    /// waiters whose time came; with `tidy` also drops the waiting rows and windows of
    /// events that ended some other way and prunes old rate starts (work that grows with
    /// the lines, so done less often). Returns how many events it woke.
    fn flow_sweep(&self, tidy: bool) -> StoreFuture<'_, u64>;

    /// Live slots, waits and pools.
    fn flow_state(&self) -> StoreFuture<'_, flow::FlowState>;

    /// Resolves when another process may have changed the schedules (PostgreSQL NOTIFY);
    /// SQLite never (the scheduler re-reads the version before each tick instead).
    fn schedules_changed(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::pending())
    }

    /// Resolves when another instance may have queued work (PostgreSQL NOTIFY); SQLite never.
    fn external_wake(&self) -> StoreFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}

/// An embedded migrator (built by hand so that no proc-macro crate is compiled).
pub(crate) fn migrator(files: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use std::borrow::Cow;
    let migrations = files
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sqlx::AssertSqlSafe(*sql).into_sql_str(),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
        table_name: Cow::Borrowed("_sqlx_migrations"),
        create_schemas: Cow::Borrowed(&[]),
    }
}

/// Where and how to open the store: plain data, built from the settings
/// (`Settings::store_config`). No `Debug`: the URL may hold a password.
#[derive(Clone)]
pub struct StoreConfig {
    /// `DATABASE_URL`: `postgres://…`, `postgresql://…` or `sqlite:…`; `None` means `sqlite_path`.
    pub database_url: Option<String>,
    /// `APP_DB_PATH`: the SQLite file used when `database_url` is unset.
    pub sqlite_path: PathBuf,
    /// `SQLITE_SYNCHRONOUS`.
    pub sqlite_synchronous: SqliteSynchronous,
    /// PostgreSQL connection settings.
    pub postgres: postgres::PgOptions,
}

/// The database the settings select, for logs and messages: the SQLite file path, or a
/// PostgreSQL `host:port/database` (never the user or password).
pub fn location(config: &StoreConfig) -> String {
    match config.database_url.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => postgres_location(url),
        Some(url) if url.starts_with("sqlite:") => sqlite_path(url).to_string(),
        Some(_) => "DATABASE_URL (unsupported scheme)".into(),
        None => config.sqlite_path.display().to_string(),
    }
}

/// `host:port/database` of a PostgreSQL URL, without credentials or options.
fn postgres_location(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "postgres://{}:{}{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432),
            u.path()
        ),
        Err(_) => "postgres://(unparsable DATABASE_URL)".into(),
    }
}

fn sqlite_path(url: &str) -> &str {
    url.trim_start_matches("sqlite://").trim_start_matches("sqlite:")
}

/// Opens the configured database for a command that only reads: a missing SQLite file or
/// a PostgreSQL database without switchyard's tables is an error naming it; nothing is created.
pub async fn open_existing(config: &StoreConfig) -> Result<Db, StoreError> {
    match config.database_url.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let options = postgres::PgOptions {
                existing_only: true,
                ..config.postgres.clone()
            };
            Ok(Arc::new(postgres::PgStore::connect(url, &options).await?))
        }
        Some(url) if url.starts_with("sqlite:") => Ok(Arc::new(
            sqlite::SqliteStore::open_existing(sqlite_path(url).as_ref(), config.sqlite_synchronous).await?,
        )),
        Some(_) => open(config).await,
        None => Ok(Arc::new(
            sqlite::SqliteStore::open_existing(&config.sqlite_path, config.sqlite_synchronous).await?,
        )),
    }
}

/// Opens the database of a command that changes it but is not a service: a SQLite file
/// must exist already (a command run in the wrong directory must not start a queue nobody
/// serves); a PostgreSQL database is migrated as [`open`] does (it exists by definition).
pub async fn open_initialised(config: &StoreConfig) -> Result<Db, StoreError> {
    match config.database_url.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => open(config).await,
        _ => open_existing(config).await,
    }
}

/// Opens the configured backend, creating or migrating its schema.
pub async fn open(config: &StoreConfig) -> Result<Db, StoreError> {
    match config.database_url.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = postgres::PgStore::connect(url, &config.postgres).await?;
            Ok(Arc::new(store))
        }
        Some(url) if url.starts_with("sqlite:") => {
            let path = sqlite_path(url);
            let store = sqlite::SqliteStore::open(path.as_ref(), config.sqlite_synchronous).await?;
            Ok(Arc::new(store))
        }
        Some(other) => Err(StoreError::Config(format!(
            "DATABASE_URL must start with postgres:// or postgresql:// (got a URL starting '{}')",
            other.split(':').next().unwrap_or("")
        ))),
        None => {
            let store = sqlite::SqliteStore::open(&config.sqlite_path, config.sqlite_synchronous).await?;
            Ok(Arc::new(store))
        }
    }
}
