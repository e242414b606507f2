//! The counts of `/stats` and the queue's depth, and the statements both backends read
//! them with (CONTRACT §10).

use serde::Serialize;

use super::query::not_done_rows;

/// Counts for `/stats`.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Events per status (every status, zero included).
    pub by_status: std::collections::BTreeMap<String, i64>,
    /// Age in seconds of the oldest due event (`pending`/`retry` whose time has come), or null.
    pub oldest_due_age_seconds: Option<f64>,
    /// Events finished `done` in the last minute.
    pub done_last_minute: i64,
    /// Events finished `error` in the last minute.
    pub failed_last_minute: i64,
    /// Events finished `done` in the last hour.
    pub done_last_hour: i64,
    /// Events finished `error` in the last hour.
    pub failed_last_hour: i64,
}

/// The queue's depth, cheap to read (the partial queue indexes hold only these rows).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueDepth {
    /// Waiting for their first attempt.
    pub pending: i64,
    /// Waiting for another attempt.
    pub retry: i64,
    /// Under a lease.
    pub processing: i64,
    /// Waiting for an LLM budget.
    pub held: i64,
    /// Waiting for a flow-control slot, window or paused pool (CONTRACT §13).
    pub waiting: i64,
    /// Oldest due event's next_attempt_at (stored text), if any is due.
    pub oldest_due: Option<String>,
}

impl QueueDepth {
    /// Records the count of one status of [`COUNT_QUEUED`]'s rows.
    pub(crate) fn set(&mut self, status: &str, n: i64) {
        match status.parse::<crate::domain::EventStatus>() {
            Ok(crate::domain::EventStatus::Pending) => self.pending = n,
            Ok(crate::domain::EventStatus::Retry) => self.retry = n,
            Ok(crate::domain::EventStatus::Held) => self.held = n,
            Ok(crate::domain::EventStatus::Waiting) => self.waiting = n,
            _ => self.processing = n,
        }
    }
}

/// Events per status other than `done`, read from `events_status_received` on both
/// backends (the `done` count reads `events_finished`).
pub(crate) const COUNT_NOT_DONE: &str = concat!(
    "SELECT status, COUNT(*) AS n FROM events WHERE ",
    not_done_rows!(),
    " GROUP BY status"
);

/// Events waiting or running, per status (`events_status_received`).
pub(crate) const COUNT_QUEUED: &str = concat!(
    "SELECT status, COUNT(*) AS n FROM events WHERE ",
    not_done_rows!(),
    " AND status IN ('pending', 'retry', 'processing', 'held', 'waiting') GROUP BY status"
);

/// [`COUNT_NOT_DONE`] on PostgreSQL: claimed events counted as `processing`
/// ([`PG_EVENTS_WITH_CLAIMS`](super::query::PG_EVENTS_WITH_CLAIMS)).
pub(crate) const PG_COUNT_NOT_DONE: &str = concat!(
    "SELECT CASE WHEN claim.event_row_id IS NOT NULL THEN 'processing' ELSE status END AS status, \
     COUNT(*) AS n FROM events LEFT JOIN event_queue claim \
     ON claim.event_row_id = events.id AND claim.leased_until IS NOT NULL WHERE ",
    not_done_rows!(),
    " GROUP BY 1"
);

/// [`COUNT_QUEUED`] on PostgreSQL: every queued or claimed event has an `event_queue` row;
/// a `held` or `waiting` event has none until it is released or woken (`events_held` and
/// `events_status_received` count those).
pub(crate) const PG_COUNT_QUEUED: &str = "SELECT CASE WHEN q.leased_until IS NOT NULL THEN 'processing' \
     ELSE e.status END AS status, COUNT(*) AS n FROM event_queue q JOIN events e ON e.id = q.event_row_id GROUP BY 1 \
     UNION ALL SELECT 'held', COUNT(*) FROM events WHERE status = 'held' \
     UNION ALL SELECT 'waiting', COUNT(*) FROM events WHERE status = 'waiting'";

/// The `(since, until)` bounds of the done/failed rates: a minute and an hour ago.
fn rate_windows() -> (String, String) {
    let now = chrono::Utc::now();
    (
        crate::time::format(now - chrono::Duration::minutes(1)),
        crate::time::format(now - chrono::Duration::hours(1)),
    )
}

/// Fills `/stats`' done and failed counts of the last minute and hour from `count(status,
/// since)`, each backend's query of events finished with a status since a time.
pub(crate) async fn fill_rates<F, Fut, E>(stats: &mut Stats, count: F) -> Result<(), E>
where
    F: Fn(crate::domain::EventStatus, String) -> Fut,
    Fut: std::future::Future<Output = Result<i64, E>>,
{
    use crate::domain::EventStatus::{Done, Error};
    let (minute, hour) = rate_windows();
    stats.done_last_minute = count(Done, minute.clone()).await?;
    stats.failed_last_minute = count(Error, minute).await?;
    stats.done_last_hour = count(Done, hour.clone()).await?;
    stats.failed_last_hour = count(Error, hour).await?;
    Ok(())
}
