//! Writes one attempt to `event_attempts` (migration 0023), inside the writer's
//! transaction, right after the statement that recorded its outcome on the event row.

use rusqlite::{Transaction, params};

/// Records the attempt event `id` just finished, read from its row as that statement left
/// it: its attempt count, claim time, status (the outcome) and `last_error`. `now` is
/// when the outcome was recorded.
pub(super) fn record(tx: &Transaction<'_>, id: i64, now: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO event_attempts (event_row_id, attempt, started_at, finished_at, outcome, error, duration_ms) \
         SELECT id, attempt_count, processing_started_at, ?2, status, last_error, \
           CAST(ROUND((julianday(?2) - julianday(processing_started_at)) * 86400000.0) AS INTEGER) \
         FROM events WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    Ok(())
}
