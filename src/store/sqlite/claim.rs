//! Claims on the writer's transaction: due events, oldest due first, under lease.

use std::time::Duration;

use rusqlite::{Transaction, params};

use super::attempts::ClaimTimes;
use super::finish::stored_event;
use super::writer::Now;
use super::*;
use crate::store::rows;
use crate::time;

/// Claims up to `limit` due events, oldest due first: a select on the due index, then one
/// update by row id per event. Inside the writer's transaction nothing else writes between
/// the two. As one `UPDATE … WHERE id IN (SELECT …) RETURNING …` it cost two ephemeral
/// tables and a statement journal per claim.
pub(super) fn claim(
    tx: &Transaction<'_>,
    limit: usize,
    lease: Duration,
    clock: &Now,
    claims: &mut ClaimTimes,
) -> rusqlite::Result<Vec<ClaimedEvent>> {
    let now = clock.text.as_str();
    // `LIMIT ?2 + 0`, not `LIMIT ?2`: SQLite's planner reads a bare bound LIMIT, so it would
    // re-prepare this statement on every run (measured: 6 % of the writer's time draining).
    // `INDEXED BY events_due`: without statistics the planner prefers the operator API's
    // `events_status_received` and sorts every due row per claim (drain 14k -> 5k events/s).
    let mut due = tx.prepare_cached(
        "SELECT id, source, event_id, attempt_count, payload_json, replay_force \
         FROM events INDEXED BY events_due \
         WHERE status IN ('pending', 'retry') AND next_attempt_at <= ?1 \
         ORDER BY next_attempt_at, id LIMIT ?2 + 0",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut claimed = due
        .query_map(params![now, limit], |r| {
            let id = r.get(0)?;
            let source = r.get_ref(1)?.as_str_or_null()?.unwrap_or_default();
            Ok(ClaimedEvent {
                id,
                source: rows::parse_word(source, "events", id, "source").map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
                })?,
                event_id: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                attempt_count: r.get::<_, Option<i64>>(3)?.unwrap_or(0) + 1,
                payload_json: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                done_runs: Vec::new(),
                forced: r.get::<_, i64>(5)? != 0,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(due);
    let until = time::after(lease);
    let mut take = tx.prepare_cached(
        "UPDATE events SET status = 'processing', processing_started_at = ?1, lease_until = ?2, \
           attempt_count = ?3 WHERE id = ?4",
    )?;
    let mut done =
        tx.prepare_cached("SELECT action, output_json FROM action_runs WHERE event_row_id = ?1 AND status = 'done'")?;
    let claimed_at: std::sync::Arc<str> = std::sync::Arc::from(now);
    for event in &mut claimed {
        take.execute(params![now, until, event.attempt_count, event.id])?;
        claims.claimed(event.id, event.attempt_count, &claimed_at, clock.at);
        // A forced replay reruns every action, so it is told of no done runs.
        if event.forced {
            continue;
        }
        event.done_runs = done
            .query_map(params![event.id], |r| {
                Ok(DoneRun {
                    action: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    output_json: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if event
            .done_runs
            .iter()
            .any(|r| run_input::output_is_event(r.output_json.as_deref()))
        {
            let stored = stored_event(tx, event.id)?;
            for run in &mut event.done_runs {
                if run_input::output_is_event(run.output_json.as_deref()) {
                    run.output_json = Some(run_input::output_of(stored.result.as_deref()));
                }
            }
        }
    }
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}
