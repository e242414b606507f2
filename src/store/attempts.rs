//! Every attempt of an event, kept across replays (table `event_attempts`, migration 0023):
//! the row each backend writes in the transaction that finishes an attempt or reclaims its
//! expired lease, read back oldest first for `GET /events/{id}`, `events show` and the
//! dashboard. The event row itself keeps only the latest attempt's error.

use serde::Serialize;

/// One attempt as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AttemptRow {
    /// The event's attempt count when it ran (as in the log line; 1 again after a replay).
    pub attempt: i64,
    /// When the worker claimed the event for it.
    pub started_at: Option<String>,
    /// When its outcome was recorded.
    pub finished_at: Option<String>,
    /// `done`, `retry` (failed, to be retried) or `error` (failed, no attempt left).
    pub outcome: String,
    /// Why it failed (null when done).
    pub error: Option<String>,
    /// From claim to outcome, in milliseconds.
    pub duration_ms: Option<i64>,
}

/// The attempts of event `?1`/`$1`, oldest first (both backends take it as written, with
/// their own placeholder).
pub(crate) const SELECT_BY_EVENT: &str = "SELECT attempt, started_at, finished_at, outcome, error, duration_ms \
     FROM event_attempts WHERE event_row_id = $1 ORDER BY id";
