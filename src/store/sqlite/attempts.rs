//! Writes attempts to `event_attempts` (migration 0023), inside the writer's transaction
//! that recorded their outcomes on the event rows.
//!
//! A finish knows every value of its attempt's row: the outcome, the error and the attempt
//! number, and [`ClaimTimes`] knows when this writer claimed the event. So the attempts a
//! request ended go in with bound values, many rows per statement ([`insert`]). Measured
//! with callgrind on the drain (docs/PERFORMANCE.md): 21.7k writer instructions per event
//! as an `INSERT … SELECT` per finish re-reading the event row (SQLite journals a page for
//! every such statement, since a `SELECT` may yield several rows, and `julianday` parses
//! both times), 9.6k as one bound single-row insert per finish, 5.6k batched. The
//! `INSERT … SELECT` ([`record`]) stays for attempts whose claim this writer did not note:
//! reclaims, and claims made by another process or before a restart.

use chrono::{DateTime, Utc};
use rusqlite::{Transaction, params};

pub(super) use crate::store::claim_times::ClaimTimes;
use crate::store::claim_times::duration_ms;

/// How one attempt ended, as its finish recorded it on the event row.
pub(super) struct Ended<'a> {
    pub id: i64,
    pub attempt: i64,
    /// The event's new status: `done`, `retry` or `error`.
    pub outcome: &'a str,
    pub error: Option<&'a str>,
}

/// An ended attempt whose claim this writer noted, waiting for [`insert`].
pub(super) struct Known<'a> {
    ended: Ended<'a>,
    started: std::sync::Arc<str>,
    duration_ms: Option<i64>,
}

/// Records the attempt a finish just ended, at `now` (`at`). When this writer noted its
/// claim it goes to `known`, for [`insert`] at the end of the request; otherwise its row is
/// read from the event row at once ([`record`]).
///
/// The finish's statement matched the row's attempt count and `processing` status, so the
/// row's `processing_started_at` is that of the last claim of this attempt number; one
/// made here replaced any earlier entry of the event.
pub(super) fn record_ended<'a>(
    tx: &Transaction<'_>,
    claims: &mut ClaimTimes,
    ended: Ended<'a>,
    now: &str,
    at: DateTime<Utc>,
    known: &mut Vec<Known<'a>>,
) -> rusqlite::Result<()> {
    let Some(claim) = claims.take(ended.id, ended.attempt) else {
        return record(tx, ended.id, now);
    };
    let duration_ms = duration_ms(claim.at, at);
    known.push(Known {
        ended,
        started: claim.text,
        duration_ms,
    });
    Ok(())
}

/// Rows per multi-row insert, largest first: any count is a sum of them, and four
/// statements stay prepared whatever the batch.
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// The insert of `rows` rows finished at `?1`, six parameters per row from `?2` on.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p = 2 + r * 6;
            format!("(?{p}, ?{}, ?{}, ?1, ?{}, ?{}, ?{})", p + 1, p + 2, p + 3, p + 4, p + 5)
        })
        .collect();
    format!(
        "INSERT INTO event_attempts (event_row_id, attempt, started_at, finished_at, outcome, error, duration_ms) \
         VALUES {}",
        values.join(", ")
    )
}

/// Inserts the attempts in `known`, finished at `now`: per statement SQLite's fixed costs
/// (cursors, the statement's end, a journaled page) are paid once for many rows.
pub(super) fn insert(tx: &Transaction<'_>, known: &[Known<'_>], now: &str) -> rusqlite::Result<()> {
    static SQL: std::sync::OnceLock<[String; 4]> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| CHUNKS.map(insert_sql));
    let mut rest = known;
    for (size, sql) in CHUNKS.iter().zip(sql) {
        while rest.len() >= *size {
            let (chunk, more) = rest.split_at(*size);
            rest = more;
            let mut stmt = tx.prepare_cached(sql)?;
            stmt.raw_bind_parameter(1, now)?;
            for (r, k) in chunk.iter().enumerate() {
                let p = 2 + r * 6;
                stmt.raw_bind_parameter(p, k.ended.id)?;
                stmt.raw_bind_parameter(p + 1, k.ended.attempt)?;
                stmt.raw_bind_parameter(p + 2, &*k.started)?;
                stmt.raw_bind_parameter(p + 3, k.ended.outcome)?;
                stmt.raw_bind_parameter(p + 4, k.ended.error)?;
                stmt.raw_bind_parameter(p + 5, k.duration_ms)?;
            }
            stmt.raw_execute()?;
        }
    }
    Ok(())
}

/// Records the attempt event `id` just ended, read from its row as that statement left
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
