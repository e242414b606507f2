//! Recording outcomes and action runs, many to a transaction.

use std::collections::HashSet;

use sqlx::postgres::{PgConnection, PgPool};

use super::claim::lock_claims;
use super::message_chunks;
use crate::store::{ActionRunRecord, Finish, Outcome, run_input};
use crate::time;

pub(super) async fn finish_attempt(pool: &PgPool, f: &Finish) -> Result<bool, sqlx::Error> {
    Ok(finish_batch(pool, std::slice::from_ref(f)).await?.remove(0))
}

/// Records many outcomes in one transaction, a few statements in all rather than two per
/// outcome: per chunk of outcomes ([`message_chunks`]), one UPDATE of the events from
/// arrays (each fenced by its claim), then one upsert of the action runs of the events it
/// applied to. A statement per outcome cost a round trip and an executor start-up each,
/// which dominated PostgreSQL's CPU in the drain.
///
/// The outcomes are stored in ascending id order, chunk after chunk, so the transaction
/// takes its row locks in that order, like every other statement on several events.
/// Answers are in the order of `finishes`.
pub(super) async fn finish_batch(pool: &PgPool, finishes: &[Finish]) -> Result<Vec<bool>, sqlx::Error> {
    let mut order: Vec<usize> = (0..finishes.len()).collect();
    order.sort_unstable_by_key(|&i| finishes[i].claim.id);
    let sorted: Vec<&Finish> = order.iter().map(|&i| &finishes[i]).collect();
    let mut tx = pool.begin().await?;
    let mut applied = vec![false; finishes.len()];
    let mut at = 0;
    for chunk in message_chunks(&sorted, |f| finish_bytes(f)) {
        for ok in finish_chunk(&mut tx, chunk).await? {
            applied[order[at]] = ok;
            at += 1;
        }
    }
    tx.commit().await?;
    Ok(applied)
}

/// Roughly what an outcome adds to the statements' messages.
fn finish_bytes(f: &Finish) -> usize {
    let outcome = match &f.outcome {
        Outcome::Done { result_json } => result_json.len(),
        Outcome::Retry { error, .. } | Outcome::Failed { error } => error.len(),
    };
    let run = f.action_run.as_ref().map_or(0, |r| {
        r.input_json.len() + r.output_json.as_ref().map_or(0, String::len) + r.error.as_ref().map_or(0, String::len)
    });
    outcome + run
}

/// [`finish_batch`]'s two statements for one chunk, inside its transaction.
async fn finish_chunk(tx: &mut PgConnection, finishes: &[&Finish]) -> Result<Vec<bool>, sqlx::Error> {
    let now = time::now();
    let mut ids = Vec::with_capacity(finishes.len());
    let mut attempts = Vec::with_capacity(finishes.len());
    let mut statuses = Vec::with_capacity(finishes.len());
    let mut processed_at: Vec<Option<&str>> = Vec::with_capacity(finishes.len());
    let mut results: Vec<Option<&str>> = Vec::with_capacity(finishes.len());
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(finishes.len());
    let mut next_attempt_at: Vec<Option<&str>> = Vec::with_capacity(finishes.len());
    let providers: Vec<Option<&str>> = finishes.iter().map(|f| f.provider.as_deref()).collect();
    let actions: Vec<Option<&str>> = finishes.iter().map(|f| f.action.as_deref()).collect();
    for f in finishes {
        ids.push(f.claim.id);
        attempts.push(f.claim.attempt);
        // NULL keeps the column as it is (see the UPDATE).
        let (status, at, result, error, next) = match &f.outcome {
            Outcome::Done { result_json } => ("done", Some(now.as_str()), Some(result_json.as_str()), None, None),
            Outcome::Retry { error, next_attempt_at } => (
                "retry",
                None,
                None,
                Some(error.as_str()),
                Some(next_attempt_at.as_str()),
            ),
            Outcome::Failed { error } => ("error", Some(now.as_str()), None, Some(error.as_str()), None),
        };
        statuses.push(status);
        processed_at.push(at);
        results.push(result);
        errors.push(error);
        next_attempt_at.push(next);
    }
    keep_run_inputs(tx, finishes).await?;
    let applied: HashSet<(i64, i64)> = sqlx::query_as(concat!(
        lock_claims!(),
        "UPDATE events e SET status = u.status, \
               processed_at = COALESCE(u.processed_at, e.processed_at), \
               result_json = CASE WHEN u.status = 'done' THEN u.result_json ELSE e.result_json END, \
               last_error = u.last_error, \
               next_attempt_at = COALESCE(u.next_attempt_at, e.next_attempt_at), \
               lease_until = NULL, \
               replay_force = CASE WHEN u.status = 'retry' THEN e.replay_force ELSE 0 END, \
               provider = COALESCE(u.provider, e.provider), action = COALESCE(u.action, e.action) \
             FROM claims, UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
               $7::text[], $8::text[], $9::text[]) \
               AS u(id, attempt, status, processed_at, result_json, last_error, next_attempt_at, provider, action) \
             WHERE e.id = claims.id AND u.id = claims.id AND u.attempt = claims.attempt \
             RETURNING e.id, e.attempt_count"
    ))
    .bind(&ids)
    .bind(&attempts)
    .bind(&statuses)
    .bind(&processed_at)
    .bind(&results)
    .bind(&errors)
    .bind(&next_attempt_at)
    .bind(&providers)
    .bind(&actions)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let applied: Vec<bool> = finishes
        .iter()
        .map(|f| applied.contains(&(f.claim.id, f.claim.attempt)))
        .collect();
    // A lost claim's action run is not written: the new owner will write its own. At most
    // one claim of an event applies, so no (event, action) pair comes twice.
    let runs: Vec<&ActionRunRecord> = finishes
        .iter()
        .zip(&applied)
        .filter_map(|(f, ok)| f.action_run.as_ref().filter(|_| *ok))
        .collect();
    if !runs.is_empty() {
        upsert_action_runs(tx, &runs).await?;
    }
    Ok(applied)
}

/// Before `done` outcomes replace their events' results, stores the full input of those
/// events' runs whose input is the event's ([`run_input`]), except the run each finish
/// rewrites.
async fn keep_run_inputs(tx: &mut PgConnection, finishes: &[&Finish]) -> Result<(), sqlx::Error> {
    let done: Vec<&&Finish> = finishes
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Done { .. }))
        .collect();
    if done.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = done.iter().map(|f| f.claim.id).collect();
    let except: Vec<Option<&str>> = done
        .iter()
        .map(|f| f.action_run.as_ref().map(|r| r.action.as_str()))
        .collect();
    sqlx::query(
        "UPDATE action_runs ar SET input_json = json_build_object('action', ar.action, \
           'router', e.result_json::json -> 'router', 'payload', e.payload_json::json)::text \
         FROM events e, UNNEST($1::bigint[], $2::text[]) AS u(id, action) \
         WHERE e.id = u.id AND ar.event_row_id = u.id AND ar.input_json = $3 \
           AND ar.action IS DISTINCT FROM u.action",
    )
    .bind(&ids)
    .bind(&except)
    .bind(run_input::FROM_EVENT)
    .execute(tx)
    .await?;
    Ok(())
}

/// Inserts or updates the runs in one statement (one per `(event_row_id, action)`).
async fn upsert_action_runs(conn: &mut PgConnection, runs: &[&ActionRunRecord]) -> Result<(), sqlx::Error> {
    let column = |f: fn(&ActionRunRecord) -> Option<&str>| runs.iter().map(|r| f(r)).collect::<Vec<_>>();
    let event_row_ids: Vec<i64> = runs.iter().map(|r| r.event_row_id).collect();
    sqlx::query(
        "INSERT INTO action_runs (event_row_id, action, started_at, finished_at, status, provider, handler_mode, \
           handler_target, input_json, output_json, error) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]) \
         ON CONFLICT (event_row_id, action) DO UPDATE SET started_at = EXCLUDED.started_at, \
           finished_at = EXCLUDED.finished_at, status = EXCLUDED.status, provider = EXCLUDED.provider, \
           handler_mode = EXCLUDED.handler_mode, handler_target = EXCLUDED.handler_target, \
           input_json = EXCLUDED.input_json, output_json = EXCLUDED.output_json, error = EXCLUDED.error",
    )
    .bind(&event_row_ids)
    .bind(column(|r| Some(&r.action)))
    .bind(column(|r| Some(&r.started_at)))
    .bind(column(|r| r.finished_at.as_deref()))
    .bind(column(|r| Some(r.status.as_str())))
    .bind(column(|r| Some(&r.provider)))
    .bind(column(|r| Some(r.handler_mode.as_str())))
    .bind(column(|r| r.handler_target.as_deref()))
    .bind(column(|r| Some(&r.input_json)))
    .bind(column(|r| r.output_json.as_deref()))
    .bind(column(|r| r.error.as_deref()))
    .execute(conn)
    .await?;
    Ok(())
}

pub(super) async fn start_run(pool: &PgPool, run: &ActionRunRecord) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    upsert_action_runs(&mut conn, &[run]).await
}
