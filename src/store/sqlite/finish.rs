//! Outcomes on the writer's transaction: the event row, its action runs and the attempts
//! the finishes ended.

use rusqlite::{Transaction, params};

use super::attempts::{self, ClaimTimes, Ended};
use super::writer::Now;
use super::*;
use crate::store::{stored_payload, stored_result};

/// Stores each outcome as [`finish`] does, then the attempts the finishes ended together.
pub(super) fn finish_many(
    tx: &Transaction<'_>,
    fs: &[Finish],
    clock: &Now,
    claims: &mut ClaimTimes,
) -> rusqlite::Result<Vec<bool>> {
    let mut known = Vec::with_capacity(fs.len());
    let applied = fs
        .iter()
        .map(|f| finish(tx, f, clock, claims, &mut known))
        .collect::<rusqlite::Result<_>>()?;
    attempts::insert(tx, &known, &clock.text)?;
    Ok(applied)
}

fn finish<'a>(
    tx: &Transaction<'_>,
    f: &'a Finish,
    clock: &Now,
    claims: &mut ClaimTimes,
    known: &mut Vec<attempts::Known<'a>>,
) -> rusqlite::Result<bool> {
    let now = clock.text.as_str();
    let (id, attempt) = (f.claim.id, f.claim.attempt);
    if f.other_runs_read_event && f.result_json().is_some() {
        keep_run_inputs(tx, id, f.action_run.as_ref().map(|r| r.action.as_str()))?;
    }
    let changed = match &f.outcome {
        // A finished attempt has rerun what a forced replay asked for: replay_force resets.
        Outcome::Done { result_json } => tx
            .prepare_cached(
                "UPDATE events SET status = 'done', processed_at = ?1, result_json = ?2, last_error = NULL, \
                 lease_until = NULL, replay_force = 0, provider = COALESCE(?5, provider), \
                 action = COALESCE(?6, action) WHERE id = ?3 AND attempt_count = ?4 AND status = 'processing'",
            )?
            .execute(params![now, result_json, id, attempt, f.provider, f.action])?,
        Outcome::Retry { error, next_attempt_at } => tx
            .prepare_cached(
                "UPDATE events SET status = 'retry', next_attempt_at = ?1, last_error = ?2, \
                 lease_until = NULL, provider = COALESCE(?5, provider), action = COALESCE(?6, action) \
                 WHERE id = ?3 AND attempt_count = ?4 AND status = 'processing'",
            )?
            .execute(params![
                next_attempt_at.as_str(),
                error,
                id,
                attempt,
                f.provider,
                f.action
            ])?,
        Outcome::Failed { error } => tx
            .prepare_cached(
                "UPDATE events SET status = 'error', processed_at = ?1, last_error = ?2, \
                 lease_until = NULL, replay_force = 0, provider = COALESCE(?5, provider), \
                 action = COALESCE(?6, action) WHERE id = ?3 AND attempt_count = ?4 AND status = 'processing'",
            )?
            .execute(params![now, error, id, attempt, f.provider, f.action])?,
    };
    if changed != 1 {
        // A lost claim's action runs are not written: the new owner will write its own.
        claims.forget(id);
        return Ok(false);
    }
    let (outcome, error) = match &f.outcome {
        Outcome::Done { .. } => ("done", None),
        Outcome::Retry { error, .. } => ("retry", Some(error.as_str())),
        Outcome::Failed { error } => ("error", Some(error.as_str())),
    };
    let ended = Ended {
        id,
        attempt,
        outcome,
        error,
    };
    attempts::record_ended(tx, claims, ended, now, clock.at, known)?;
    for run in f.runs() {
        upsert_action_run(tx, run)?;
    }
    if let Some(result_json) = f.fan_out.as_deref().and_then(|o| o.unfinished_result_json.as_deref()) {
        tx.prepare_cached("UPDATE events SET result_json = ?1 WHERE id = ?2")?
            .execute(params![result_json, id])?;
    }
    Ok(true)
}

/// The parts of an event row that a run's input and output are rebuilt from.
pub(super) struct StoredEvent {
    payload: Option<String>,
    /// The result as read ([`stored_result::expand`]).
    pub(super) result: Option<String>,
}

pub(super) fn stored_event(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<StoredEvent> {
    let (source, event_id, payload, result) = tx
        .prepare_cached("SELECT source, event_id, payload_json, result_json FROM events WHERE id = ?1")?
        .query_row(params![id], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
    let source = source.and_then(|s| s.parse().ok());
    let payload = payload.map(|p| stored_payload::expand(&p, source));
    let result = result.map(|r| stored_result::expand(&r, source, event_id.as_deref()));
    Ok(StoredEvent { payload, result })
}

/// Before a `done` outcome replaces the event's result, stores the full input and output
/// of the event's runs that hold the event's ([`run_input`]), except the run of `except`,
/// which this finish rewrites. Built here rather than in SQL so that the texts are exactly
/// the worker's (the stored result is compact: [`stored_result`]).
fn keep_run_inputs(tx: &Transaction<'_>, event_row_id: i64, except: Option<&str>) -> rusqlite::Result<()> {
    let marked = tx
        .prepare_cached(
            "SELECT id, action, input_json, output_json FROM action_runs \
             WHERE event_row_id = ?1 AND action IS NOT ?2 AND (input_json IN (?3, ?4) OR output_json = ?3)",
        )?
        .query_map(
            params![event_row_id, except, run_input::EVENT, run_input::FROM_EVENT],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if marked.is_empty() {
        return Ok(());
    }
    let event = stored_event(tx, event_row_id)?;
    let mut keep = tx.prepare_cached("UPDATE action_runs SET input_json = ?1, output_json = ?2 WHERE id = ?3")?;
    for (run_id, action, input, output) in marked {
        let input = match run_input::input_is_event(input.as_deref()) {
            true => Some(run_input::input_of(
                action.as_deref().unwrap_or_default(),
                event.payload.as_deref(),
                event.result.as_deref(),
            )),
            false => input,
        };
        let output = match run_input::output_is_event(output.as_deref()) {
            true => Some(run_input::output_of(event.result.as_deref())),
            false => output,
        };
        keep.execute(params![input, output, run_id])?;
    }
    Ok(())
}

pub(super) fn upsert_action_run(tx: &Transaction<'_>, run: &ActionRunRecord) -> rusqlite::Result<()> {
    // One statement: the unique key on (event_row_id, action) is part of the seed's layout,
    // and `SqliteStore::open` adds it to a file that lacks it.
    tx.prepare_cached(concat!(
        "INSERT INTO action_runs (started_at, finished_at, status, provider, handler_mode, handler_target, \
         input_json, output_json, error, event_row_id, action, attempts) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1) \
         ON CONFLICT(event_row_id, action) DO UPDATE SET started_at = excluded.started_at, \
         finished_at = excluded.finished_at, status = excluded.status, provider = excluded.provider, \
         handler_mode = excluded.handler_mode, handler_target = excluded.handler_target, \
         input_json = excluded.input_json, output_json = excluded.output_json, error = excluded.error, ",
        crate::store::count_run_attempt!()
    ))?
    .execute(params![
        run.started_at,
        run.finished_at,
        run.status.as_str(),
        run.provider,
        run.handler_mode.as_str(),
        run.handler_target,
        run.input_json,
        run.output_json,
        run.error,
        run.event_row_id,
        run.action,
    ])?;
    Ok(())
}
