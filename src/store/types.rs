//! Values passed to and from the store.

use serde::Serialize;

use crate::domain::{EventStatus, HandlerMode, RunStatus, Source, Timestamp};
pub use crate::domain::{Mapping, RoutingChanges, Rule, RuleUpsert};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database driver failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite writer's connection failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The configuration of the store is wrong (bad URL, unwritable path…).
    #[error("{0}")]
    Config(String),
    /// The writer task is gone (shutting down).
    #[error("the database writer has stopped")]
    WriterGone,
}

impl StoreError {
    /// Whether the same operation may pass when tried again later: the connection or the
    /// server went away, a lock conflict or deadlock aborted it, the server is short of
    /// resources, or it timed out. Errors about the data itself, the schema or the
    /// configuration would fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                    // 08 connection, 40 rollbacks (deadlock, serialization), 53 resources,
                    // 57 admin shutdown and cancellation (statement timeout), 55P03 lock timeout.
                    ["08", "40", "53", "57"].iter().any(|class| c.starts_with(class)) || c == "55P03"
                }),
                _ => false,
            },
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
            }
            StoreError::Sqlite(_) | StoreError::Migrate(_) | StoreError::Config(_) | StoreError::WriterGone => false,
        }
    }
}

/// An event to queue.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Where it came from.
    pub source: Source,
    /// The dedupe key within `source`.
    pub event_id: String,
    /// The stored payload envelope, as JSON text.
    pub payload_json: String,
}

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new row was committed.
    Queued(i64),
    /// The event existed already; this is its row id.
    Duplicate(i64),
}

impl Enqueued {
    /// The row id either way.
    pub fn row_id(self) -> i64 {
        match self {
            Enqueued::Queued(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// An event a worker holds under lease.
#[derive(Debug, Clone)]
pub struct ClaimedEvent {
    /// Row id.
    pub id: i64,
    /// Where it came from.
    pub source: Source,
    /// Dedupe key.
    pub event_id: String,
    /// Attempts including this one; the fencing token of the claim.
    pub attempt_count: i64,
    /// The stored payload envelope.
    pub payload_json: String,
    /// Actions of this event that already ran to `done` (read with the claim, so the
    /// idempotency check costs no extra query per event). Empty for a forced replay.
    pub done_runs: Vec<DoneRun>,
    /// A forced replay: every action runs again, and `done_runs` was not read.
    pub forced: bool,
}

/// An action that already succeeded for an event, and its stored output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneRun {
    /// The action.
    pub action: String,
    /// Its output as JSON text.
    pub output_json: Option<String>,
}

impl ClaimedEvent {
    /// The reference used to renew, finish or release this claim.
    pub fn claim_ref(&self) -> ClaimRef {
        ClaimRef {
            id: self.id,
            attempt: self.attempt_count,
        }
    }
}

/// An event a reclaim took back from an expired lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaimed {
    /// Row id.
    pub id: i64,
    /// The event's `event_id`.
    pub event_id: String,
    /// True when it went to `error` (out of attempts) rather than `retry`.
    pub exhausted: bool,
}

/// Identifies one claim: row id plus the attempt it was claimed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRef {
    /// Row id.
    pub id: i64,
    /// The attempt number the claim set.
    pub attempt: i64,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Success: the stored result.
    Done {
        /// The result object as JSON text.
        result_json: String,
    },
    /// Failure with attempts left: try again at `next_attempt_at`.
    Retry {
        /// Why it failed.
        error: String,
        /// When to try again.
        next_attempt_at: Timestamp,
    },
    /// Failure with no attempts left.
    Failed {
        /// Why it failed.
        error: String,
    },
}

impl Outcome {
    /// The event status this outcome leaves: `done`, `retry` or `error`.
    pub fn status(&self) -> EventStatus {
        match self {
            Outcome::Done { .. } => EventStatus::Done,
            Outcome::Retry { .. } => EventStatus::Retry,
            Outcome::Failed { .. } => EventStatus::Error,
        }
    }
}

/// The outcome of one attempt, with the action run it produced, if any.
#[derive(Debug, Clone)]
pub struct Finish {
    /// Which claim.
    pub claim: ClaimRef,
    /// What happened.
    pub outcome: Outcome,
    /// The action run to upsert on `(event_row_id, action)` (a fan-out's first; the others
    /// are in [`FanOutFinish::more_runs`]).
    pub action_run: Option<ActionRunRecord>,
    /// Provider the attempt detected (kept on the event for filtering).
    pub provider: Option<String>,
    /// Action the attempt routed to, if any.
    pub action: Option<String>,
    /// Whether runs of other actions of this event may store their input and output as the
    /// event's ([`run_input::EVENT`](super::run_input::EVENT)): a `done` outcome then first
    /// writes them out, since it replaces the result they are read from. False only when
    /// the claim showed no such run, which spares a statement per finish.
    pub other_runs_read_event: bool,
    /// What only an event with several actions has (CONTRACT §12); `None` for one action,
    /// which is then stored exactly as before.
    pub fan_out: Option<Box<FanOutFinish>>,
}

/// The part of an outcome that only an event with several actions has.
#[derive(Debug, Clone, Default)]
pub struct FanOutFinish {
    /// The runs of the actions after the first (whose run is [`Finish::action_run`]).
    pub more_runs: Vec<ActionRunRecord>,
    /// A retry's or failure's result: every action's output or error, in the full form
    /// with `"ok": false`, so the event shows which actions are done while it is not.
    /// (A `done` outcome's result is in [`Outcome::Done`].)
    pub unfinished_result_json: Option<String>,
}

impl Finish {
    /// Every action run this finish writes.
    pub fn runs(&self) -> impl Iterator<Item = &ActionRunRecord> {
        let more = self.fan_out.as_deref().map_or(&[][..], |f| f.more_runs.as_slice());
        self.action_run.iter().chain(more)
    }

    /// The result this finish stores on the event, if any: a `done` outcome's, or an
    /// unfinished fan-out's.
    pub fn result_json(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Done { result_json } => Some(result_json),
            Outcome::Retry { .. } | Outcome::Failed { .. } => self
                .fan_out
                .as_deref()
                .and_then(|f| f.unfinished_result_json.as_deref()),
        }
    }
}

/// An action run as written by the worker.
#[derive(Debug, Clone)]
pub struct ActionRunRecord {
    /// The event's row id.
    pub event_row_id: i64,
    /// When the handler started.
    pub started_at: String,
    /// When it finished (None while running).
    pub finished_at: Option<String>,
    /// Where the run stands.
    pub status: RunStatus,
    /// Detected provider.
    pub provider: String,
    /// Routed action.
    pub action: String,
    /// Handler mode.
    pub handler_mode: HandlerMode,
    /// Handler target.
    pub handler_target: Option<String>,
    /// What the handler received, as JSON text.
    pub input_json: String,
    /// What it returned, as JSON text.
    pub output_json: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A stored event, with the seed's columns.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventRow {
    /// Row id.
    pub id: i64,
    /// Where it came from.
    pub source: Option<Source>,
    /// Dedupe key.
    pub event_id: Option<String>,
    /// When it arrived.
    pub received_at: Option<String>,
    /// Where it stands.
    pub status: Option<EventStatus>,
    /// Attempts so far.
    pub attempt_count: i64,
    /// When it is next due.
    pub next_attempt_at: Option<String>,
    /// When the current or last attempt started.
    pub processing_started_at: Option<String>,
    /// When it reached done or error.
    pub processed_at: Option<String>,
    /// The payload envelope as JSON text.
    pub payload_json: Option<String>,
    /// The result as JSON text.
    pub result_json: Option<String>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A stored action run, with the seed's columns.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionRunRow {
    /// Row id.
    pub id: i64,
    /// The event's row id.
    pub event_row_id: i64,
    /// When the handler started.
    pub started_at: Option<String>,
    /// When it finished.
    pub finished_at: Option<String>,
    /// Where the run stands.
    pub status: Option<RunStatus>,
    /// Detected provider.
    pub provider: Option<String>,
    /// Routed action.
    pub action: Option<String>,
    /// Handler mode.
    pub handler_mode: Option<HandlerMode>,
    /// Handler target.
    pub handler_target: Option<String>,
    /// Input as JSON text.
    pub input_json: Option<String>,
    /// Output as JSON text.
    pub output_json: Option<String>,
    /// Failure message.
    pub error: Option<String>,
    /// How many times the action's handler ran for this event (CONTRACT §12), replays
    /// and forced replays included; a `done` action replayed from its stored output does
    /// not count.
    pub attempts: i64,
}

/// Every rule and mapping, as the router reads them.
#[derive(Debug, Clone, Default)]
pub struct RoutingTables {
    /// All rules, any order.
    pub rules: Vec<Rule>,
    /// All mappings.
    pub mappings: Vec<Mapping>,
}
