//! Writes one attempt to `event_attempts` (migration 0023), inside the writer's
//! transaction, right after the statement that recorded its outcome on the event row.
//!
//! A finish binds every value of the row: it knows the outcome, the error and the attempt,
//! and [`ClaimTimes`] knows when this writer claimed the event. The `INSERT … SELECT` that
//! re-reads them from the event row costs 2.3 times the instructions of that insert (SQLite
//! journals the page for a statement that may write several rows, and `julianday` parses
//! both times; docs/PERFORMANCE.md); it stays for the attempts whose claim this writer did
//! not note: reclaims, and claims made by another process or before a restart.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Transaction, params};

/// This many claims noted and not ended means some ended elsewhere (another process
/// reclaimed them): the notes are dropped rather than kept growing, and those finishes read
/// the rows. A worker holds at most `WORKER_CONCURRENCY` (≤ 10,000) claims at a time.
const MAX_CLAIM_TIMES: usize = 65_536;

/// When this writer claimed each event whose attempt has not ended yet: the claim time
/// it stored as the event's `processing_started_at`, kept by row id and attempt.
#[derive(Default)]
pub(super) struct ClaimTimes(HashMap<i64, Claimed>);

struct Claimed {
    attempt: i64,
    /// As stored.
    text: String,
    at: DateTime<Utc>,
}

impl ClaimTimes {
    /// Notes that attempt `attempt` of event `id` was claimed at `text` (`at`).
    pub(super) fn claimed(&mut self, id: i64, attempt: i64, text: &str, at: DateTime<Utc>) {
        if self.0.len() >= MAX_CLAIM_TIMES {
            self.0.clear();
        }
        let text = text.to_string();
        self.0.insert(id, Claimed { attempt, text, at });
    }

    /// Forgets event `id`'s claim: it ended without a finish here (released, held,
    /// reclaimed), or its finish lost the claim.
    pub(super) fn forget(&mut self, id: i64) {
        self.0.remove(&id);
    }

    /// Forgets every claim (their transaction was rolled back).
    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}

/// How one attempt ended, as its finish recorded it on the event row.
pub(super) struct Ended<'a> {
    pub id: i64,
    pub attempt: i64,
    /// The event's new status: `done`, `retry` or `error`.
    pub outcome: &'a str,
    pub error: Option<&'a str>,
}

/// Records the attempt a finish just ended, at `now` (`at`). Its start is the claim's
/// time when this writer made the claim, else read from the event row ([`record`]).
///
/// The finish's statement matched the row's attempt count and `processing` status, so the
/// row's `processing_started_at` is that of the last claim of this attempt number; one
/// made here replaced any earlier entry of the event.
pub(super) fn record_ended(
    tx: &Transaction<'_>,
    claims: &mut ClaimTimes,
    ended: &Ended<'_>,
    now: &str,
    at: DateTime<Utc>,
) -> rusqlite::Result<()> {
    let Some(claim) = claims.0.remove(&ended.id).filter(|c| c.attempt == ended.attempt) else {
        return record(tx, ended.id, now);
    };
    // Rounded to the millisecond as PostgreSQL's finish rounds it.
    let duration_ms = (at - claim.at)
        .num_microseconds()
        .map(|us| (us as f64 / 1000.0).round() as i64);
    tx.prepare_cached(
        "INSERT INTO event_attempts (event_row_id, attempt, started_at, finished_at, outcome, error, duration_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        ended.id,
        ended.attempt,
        claim.text,
        now,
        ended.outcome,
        ended.error,
        duration_ms
    ])?;
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
