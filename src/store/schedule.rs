//! Schedules as stored (CONTRACT §9): the definition plus the last tick enqueued.

pub use crate::domain::{Missed, Schedule};

/// A schedule with the last tick any instance enqueued for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
    /// The definition.
    pub schedule: Schedule,
    /// RFC 3339 UTC, seconds precision; None before the first tick.
    pub last_scheduled_at: Option<String>,
    /// RFC 3339 UTC: when it was added, last enabled, or its cron or zone last changed;
    /// None for a row older than the column that had already fired.
    pub active_since: Option<String>,
}

/// A tick that was enqueued: `last_scheduled_at` of `job` moves up to `at` (never back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickRecord {
    /// The job.
    pub job: String,
    /// The tick, RFC 3339 UTC with seconds precision.
    pub at: String,
}
