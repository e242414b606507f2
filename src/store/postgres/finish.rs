//! Recording outcomes and action runs, many to a transaction.

use std::collections::HashSet;

use chrono::Utc;

use sqlx::Row;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, Postgres};
use sqlx::query::Query;

use super::attempts::record_attempts;
use super::chunks::message_chunks;
use crate::domain::EventStatus;
use crate::store::claim_times::{ClaimStarts, duration_ms};
use crate::store::{ActionRunRecord, Finish, Outcome, run_input, stored_payload, stored_result};
use crate::time;

/// Records many outcomes in one transaction, one statement per chunk of outcomes
/// ([`message_chunks`]): it updates the events from arrays (each fenced by its claim),
/// upserts the action runs and records the attempts of the events the update applied to.
/// A statement per outcome cost a round trip and an executor start-up each, which
/// dominated PostgreSQL's CPU in the drain; a statement per table still cost a round trip
/// each.
///
/// The outcomes are stored in ascending id order, chunk after chunk, so the transaction
/// takes its row locks in that order, like every other statement on several events.
/// Answers are in the order of `finishes`.
pub(super) async fn finish_batch(
    pool: &PgPool,
    finishes: &[Finish],
    starts: &ClaimStarts,
) -> Result<Vec<bool>, sqlx::Error> {
    let mut order: Vec<usize> = (0..finishes.len()).collect();
    order.sort_unstable_by_key(|&i| finishes[i].claim.id);
    let sorted: Vec<&Finish> = order.iter().map(|&i| &finishes[i]).collect();
    let mut tx = pool.begin().await?;
    let mut applied = vec![false; finishes.len()];
    let mut at = 0;
    for chunk in message_chunks(&sorted, |f| finish_bytes(f)).flat_map(distinct_ids) {
        for ok in finish_chunk(&mut tx, chunk, starts).await? {
            applied[order[at]] = ok;
            at += 1;
        }
    }
    tx.commit().await?;
    Ok(applied)
}

/// Splits a run of finishes sorted by event id where an id repeats, so that each statement
/// sees an event once: [`take_claims!`] looks a row's claim up by its id. Two claims of one
/// event come in one batch only when a lease expired under a running attempt and this
/// process claimed the event again; of the two, only the current claim applies.
fn distinct_ids<'a, 'f>(chunk: &'a [&'f Finish]) -> impl Iterator<Item = &'a [&'f Finish]> {
    chunk.chunk_by(|a, b| a.claim.id != b.claim.id)
}

/// Roughly what an outcome adds to the statement's message.
fn finish_bytes(f: &Finish) -> usize {
    let outcome = match &f.outcome {
        Outcome::Done { .. } => 0,
        Outcome::Retry { error, .. } | Outcome::Failed { error } => error.len(),
    };
    let result = f.result_json().map_or(0, str::len);
    let runs: usize = f
        .runs()
        .map(|r| {
            r.input_json.len() + r.output_json.as_ref().map_or(0, String::len) + r.error.as_ref().map_or(0, String::len)
        })
        .sum();
    outcome + result + runs
}

/// The outcome columns of a chunk, one array per column of the UPDATE. NULL keeps a
/// column as it is (see the statement).
#[derive(Default)]
struct OutcomeColumns<'a> {
    ids: Vec<i64>,
    attempts: Vec<i64>,
    statuses: Vec<&'static str>,
    processed_at: Vec<Option<&'a str>>,
    results: Vec<Option<&'a str>>,
    errors: Vec<Option<&'a str>>,
    next_attempt_at: Vec<Option<&'a str>>,
    providers: Vec<Option<&'a str>>,
    actions: Vec<Option<&'a str>>,
}

impl<'a> OutcomeColumns<'a> {
    fn new(finishes: &[&'a Finish], now: &'a str) -> Self {
        let mut c = OutcomeColumns::default();
        for f in finishes {
            let (status, at, error, next) = match &f.outcome {
                Outcome::Done { .. } => (EventStatus::Done, Some(now), None, None),
                Outcome::Retry { error, next_attempt_at } => (
                    EventStatus::Retry,
                    None,
                    Some(error.as_str()),
                    Some(next_attempt_at.as_str()),
                ),
                Outcome::Failed { error } => (EventStatus::Error, Some(now), Some(error.as_str()), None),
            };
            // A `done` outcome's result, or an unfinished fan-out's (NULL keeps the stored one).
            let result = f.result_json();
            c.ids.push(f.claim.id);
            c.attempts.push(f.claim.attempt);
            c.statuses.push(status.as_str());
            c.processed_at.push(at);
            c.results.push(result);
            c.errors.push(error);
            c.next_attempt_at.push(next);
            c.providers.push(f.provider.as_deref());
            c.actions.push(f.action.as_deref());
        }
        c
    }
}

/// The action-run columns of some runs, one array per column of `action_runs`, plus the
/// attempt of the claim that wrote each (empty for a run stored outside a finish).
struct RunColumns<'a> {
    event_row_ids: Vec<i64>,
    attempts: Vec<i64>,
    text: [Vec<Option<&'a str>>; 10],
}

impl<'a> RunColumns<'a> {
    fn new(runs: &[(&'a ActionRunRecord, i64)]) -> Self {
        let column = |f: fn(&'a ActionRunRecord) -> Option<&'a str>| runs.iter().map(|(r, _)| f(r)).collect::<Vec<_>>();
        RunColumns {
            event_row_ids: runs.iter().map(|(r, _)| r.event_row_id).collect(),
            attempts: runs.iter().map(|(_, a)| *a).collect(),
            text: [
                column(|r| Some(&r.action)),
                column(|r| Some(&r.started_at)),
                column(|r| r.finished_at.as_deref()),
                column(|r| Some(r.status.as_str())),
                column(|r| Some(&r.provider)),
                column(|r| Some(r.handler_mode.as_str())),
                column(|r| r.handler_target.as_deref()),
                column(|r| Some(&r.input_json)),
                column(|r| r.output_json.as_deref()),
                column(|r| r.error.as_deref()),
            ],
        }
    }

    /// Binds the run columns, `event_row_ids` first, then the ten text columns.
    fn bind<'q>(&'q self, mut q: Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments> {
        q = q.bind(&self.event_row_ids).bind(&self.attempts);
        for col in &self.text {
            q = q.bind(col);
        }
        q
    }
}

/// The column list and conflict clause of every action-run upsert.
macro_rules! upsert_runs {
    ($select:literal) => {
        concat!(
            "INSERT INTO action_runs (event_row_id, action, started_at, finished_at, status, provider, \
               handler_mode, handler_target, input_json, output_json, error, attempts) ",
            $select,
            " ON CONFLICT (event_row_id, action) DO UPDATE SET started_at = EXCLUDED.started_at, \
               finished_at = EXCLUDED.finished_at, status = EXCLUDED.status, provider = EXCLUDED.provider, \
               handler_mode = EXCLUDED.handler_mode, handler_target = EXCLUDED.handler_target, \
               input_json = EXCLUDED.input_json, output_json = EXCLUDED.output_json, error = EXCLUDED.error, ",
            crate::store::count_run_attempt!()
        )
    };
}

/// The claims a finish still holds, taken off the queue or put back on it in the same step
/// (`$1` ids in ascending order, `$2` their attempts, `$3` their outcomes' statuses, `$7`
/// the retries' due times): a finished event's queue row is deleted, a retried one waits
/// there again until its `next_attempt_at`. Each row is found by primary key (`= ANY`,
/// ascending, which the planner cannot turn into a scan of the queue) and changed only
/// while it still holds the claim: same attempt (a hashed `IN`; looking each row's
/// attempt up with `array_position` scanned the array, 1.2 µs per row at 256 rows), under
/// lease. A row another process changed meanwhile is checked again on its newest version,
/// so a lost claim changes nothing. `claims` is what was changed (`id`, `attempt`, `claimed_at`).
///
/// The DELETE and UPDATE lock the rows themselves. A `SELECT … FOR NO KEY UPDATE` before
/// them, as the finish had, wrote a WAL record and dirtied a page per event for a lock
/// the next step took anyway. Renewals skip rows that are locked ([`renew_leases`](super::claim)),
/// and claims and reclaims skip them too, so nobody waits on a finish while holding a row it
/// wants.
macro_rules! take_claims {
    () => {
        "WITH gone AS ( \
           DELETE FROM event_queue q \
           WHERE q.event_row_id = ANY (ARRAY(SELECT u.id FROM UNNEST($1::bigint[], $3::text[]) AS u(id, status) \
               WHERE u.status <> 'retry')) \
             AND (q.event_row_id, q.attempt) IN (SELECT * FROM UNNEST($1::bigint[], $2::bigint[])) \
             AND COALESCE(q.leased_until, '') <> '' \
           RETURNING q.event_row_id AS id, q.attempt, q.claimed_at), \
         back AS ( \
           UPDATE event_queue q SET leased_until = NULL, \
             run_at = ($7::text[])[array_position($1::bigint[], q.event_row_id)] \
           WHERE q.event_row_id = ANY (ARRAY(SELECT u.id FROM UNNEST($1::bigint[], $3::text[]) AS u(id, status) \
               WHERE u.status = 'retry')) \
             AND (q.event_row_id, q.attempt) IN (SELECT * FROM UNNEST($1::bigint[], $2::bigint[])) \
             AND COALESCE(q.leased_until, '') <> '' \
           RETURNING q.event_row_id AS id, q.attempt, q.claimed_at), \
         claims AS (SELECT * FROM gone UNION ALL SELECT * FROM back)"
    };
}

/// [`finish_batch`]'s one statement for one chunk, inside its transaction: take the claims
/// that still hold off the queue or put them back on it ([`take_claims!`]), write their
/// events (the one write of the wide row per attempt: status, attempt, timestamps,
/// result), upsert the action runs of exactly those (joined on id and attempt: a lost
/// claim's run is not written, the new owner writes its own) and record their attempts
/// ([`record_attempts!`]). At most one claim of an event applies, so no `(event, action)`
/// pair comes twice.
async fn finish_chunk(
    tx: &mut PgConnection,
    finishes: &[&Finish],
    starts: &ClaimStarts,
) -> Result<Vec<bool>, sqlx::Error> {
    let at = Utc::now();
    let now = time::format(at);
    let durations: Vec<Option<i64>> = finishes
        .iter()
        .map(|f| {
            starts
                .get(&(f.claim.id, f.claim.attempt))
                .and_then(|&s| duration_ms(s, at))
        })
        .collect();
    keep_run_inputs(tx, finishes).await?;
    let out = OutcomeColumns::new(finishes, &now);
    let runs: Vec<(&ActionRunRecord, i64)> = finishes
        .iter()
        .flat_map(|f| f.runs().map(|r| (r, f.claim.attempt)))
        .collect();
    let runs = RunColumns::new(&runs);
    let q = sqlx::query(concat!(
        take_claims!(),
        ", applied AS ( \
           UPDATE events e SET status = u.status, attempt_count = claims.attempt, \
               processing_started_at = claims.claimed_at, \
               processed_at = COALESCE(u.processed_at, e.processed_at), \
               result_json = COALESCE(u.result_json, e.result_json), \
               last_error = u.last_error, \
               next_attempt_at = COALESCE(u.next_attempt_at, e.next_attempt_at), \
               replay_force = CASE WHEN u.status = 'retry' THEN e.replay_force ELSE 0 END, \
               provider = COALESCE(u.provider, e.provider), action = COALESCE(u.action, e.action) \
             FROM claims, UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
               $7::text[], $8::text[], $9::text[], $23::bigint[]) \
               AS u(id, attempt, status, processed_at, result_json, last_error, next_attempt_at, provider, action, \
                 duration_ms) \
             WHERE e.id = claims.id AND u.id = claims.id AND u.attempt = claims.attempt \
             RETURNING e.id, e.attempt_count, e.status, e.processing_started_at, e.last_error, u.duration_ms), \
         runs AS (",
        upsert_runs!(
            "SELECT r.event_row_id, r.action, r.started_at, r.finished_at, r.status, r.provider, \
               r.handler_mode, r.handler_target, r.input_json, r.output_json, r.error, 1 \
             FROM UNNEST($10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[], \
               $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[]) \
               AS r(event_row_id, attempt, action, started_at, finished_at, status, provider, handler_mode, \
                 handler_target, input_json, output_json, error) \
             JOIN applied ON applied.id = r.event_row_id AND applied.attempt_count = r.attempt"
        ),
        "), ",
        record_attempts!("$22", "duration_ms"),
        " SELECT id, attempt_count FROM applied"
    ))
    .bind(&out.ids)
    .bind(&out.attempts)
    .bind(&out.statuses)
    .bind(&out.processed_at)
    .bind(&out.results)
    .bind(&out.errors)
    .bind(&out.next_attempt_at)
    .bind(&out.providers)
    .bind(&out.actions);
    let applied = runs
        .bind(q)
        .bind(&now)
        .bind(&durations)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<HashSet<(i64, i64)>, sqlx::Error>>()?;
    Ok(finishes
        .iter()
        .map(|f| applied.contains(&(f.claim.id, f.claim.attempt)))
        .collect())
}

/// Before `done` outcomes (or unfinished fan-outs) replace their events' results, stores the full input of those
/// events' runs whose input is the event's ([`run_input`]), except the run each finish
/// rewrites.
async fn keep_run_inputs(tx: &mut PgConnection, finishes: &[&Finish]) -> Result<(), sqlx::Error> {
    let done: Vec<&&Finish> = finishes
        .iter()
        .filter(|f| f.other_runs_read_event && f.result_json().is_some())
        .collect();
    if done.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = done.iter().map(|f| f.claim.id).collect();
    let except: Vec<Option<&str>> = done
        .iter()
        .map(|f| f.action_run.as_ref().map(|r| r.action.as_str()))
        .collect();
    // The runs are found by a lookup per event on the `(event_row_id, action)` key (`OFFSET 0`
    // keeps the planner from flattening it): as a join, the planner, without fresh
    // statistics, scanned all of `action_runs` per call — 120 ms each at 50,000 runs, nearly
    // all of a PostgreSQL drain's time (docs/PERFORMANCE.md).
    // Inputs and outputs that are the event's (store::run_input) are written out. A compact
    // result (no `ok`: store::stored_result) left out the router's nulls, and a compact
    // envelope (a webhook's without `method`: store::stored_payload) its defaults; they are
    // put back, as the handler saw them.
    sqlx::query(
        "UPDATE action_runs ar SET \
           input_json = CASE WHEN ar.input_json IN ($3, $4) THEN json_build_object('action', ar.action, \
             'router', CASE WHEN m.result_json::jsonb ? 'ok' THEN m.result_json::json -> 'router' \
               ELSE ($5::jsonb || (m.result_json::jsonb -> 'router'))::json END, \
             'payload', CASE WHEN m.source = 'webhook' AND NOT m.payload_json::jsonb ? 'method' \
                 AND m.payload_json::jsonb ? 'headers' \
               THEN (jsonb_build_object('source_hint', NULL, 'method', $6::text, \
                 'path', '/webhook' || COALESCE('/' || (m.payload_json::jsonb ->> 'source_hint'), ''), \
                 'query', '{}'::jsonb, 'content_type', m.payload_json::jsonb -> 'headers' -> 'content-type') \
                 || m.payload_json::jsonb)::json \
               ELSE m.payload_json::json END)::text ELSE ar.input_json END, \
           output_json = CASE WHEN ar.output_json = $3 THEN (m.result_json::json -> 'result')::text \
             ELSE ar.output_json END \
         FROM (SELECT r.id, e.source, e.result_json, e.payload_json \
                 FROM UNNEST($1::bigint[], $2::text[]) AS u(id, action) \
                 CROSS JOIN LATERAL (SELECT x.id FROM action_runs x \
                   WHERE x.event_row_id = u.id AND (x.input_json IN ($3, $4) OR x.output_json = $3) \
                     AND x.action IS DISTINCT FROM u.action OFFSET 0) r \
                 JOIN events e ON e.id = u.id) m \
         WHERE ar.id = m.id",
    )
    .bind(&ids)
    .bind(&except)
    .bind(run_input::EVENT)
    .bind(run_input::FROM_EVENT)
    .bind(router_nulls())
    .bind(stored_payload::METHOD)
    .execute(tx)
    .await?;
    Ok(())
}

/// `{"ai_detection":null,…}`: the router keys a compact result leaves out when null.
fn router_nulls() -> String {
    let nulls: serde_json::Map<String, serde_json::Value> = stored_result::ROUTER_NULLABLE
        .iter()
        .map(|k| ((*k).to_string(), serde_json::Value::Null))
        .collect();
    serde_json::Value::Object(nulls).to_string()
}

/// Inserts or updates one action run (one per `(event_row_id, action)`): a run started
/// before its handler, so that a crash leaves a trace.
pub(super) async fn start_run(pool: &PgPool, run: &ActionRunRecord) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let runs = RunColumns::new(&[(run, 0)]);
    let q = sqlx::query(upsert_runs!(
        "SELECT r.event_row_id, r.action, r.started_at, r.finished_at, r.status, r.provider, \
           r.handler_mode, r.handler_target, r.input_json, r.output_json, r.error, 1 \
         FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
           $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) \
           AS r(event_row_id, attempt, action, started_at, finished_at, status, provider, handler_mode, \
             handler_target, input_json, output_json, error)"
    ));
    runs.bind(q).execute(&mut *conn).await?;
    Ok(())
}
