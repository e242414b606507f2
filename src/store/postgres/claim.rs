//! Claims, lease renewal and release, reclaiming expired leases, replay.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use super::attempts::record_attempts;
use crate::store::{ClaimRef, ClaimedEvent, DoneRun, Reclaimed, rows, run_input, stored_result};
use crate::time;

/// The `last_error` of an event whose lease expired (same text as SQLite).
const LEASE_EXPIRED: &str = "lease expired: the worker holding this event stopped or stalled";

/// How often a claim scans `event_queue_due` from its start even while the scans after the
/// cursor keep finding full batches, so events that became due behind the cursor (retries,
/// releases, reclaims, clocks of other instances) wait at most about this long.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(1);

/// Where this process's next claim starts its scan of `event_queue_due`: after the key
/// `(run_at, event_row_id)` of the last event it claimed. Claimed rows leave dead entries
/// at the front of that index until vacuum, and a scan from the start steps over all of
/// them: over a deep queue the claims got slower the further the drain went.
#[derive(Default)]
pub(super) struct ClaimCursor(Mutex<CursorState>);

#[derive(Default)]
struct CursorState {
    after: Option<(String, i64)>,
    full_scan_at: Option<Instant>,
}

impl ClaimCursor {
    /// The key to scan after, or None for a scan from the start (no cursor, or the last
    /// full scan is [`FULL_SCAN_EVERY`] old).
    fn start(&self) -> Option<(String, i64)> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if s.full_scan_at.is_none_or(|t| t.elapsed() >= FULL_SCAN_EVERY) {
            s.after = None;
        }
        if s.after.is_none() {
            s.full_scan_at = Some(Instant::now());
        }
        s.after.clone()
    }

    /// After a claim: a full batch moves the cursor to its last key; a short one means the
    /// scan ran out of due rows, so the next claim starts from the beginning.
    fn advance(&self, last: Option<(String, i64)>, full: bool) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.after = last.filter(|_| full);
    }
}

/// The claim statement, with or without the cursor condition (two texts rather than a
/// condition on a NULL parameter, so each prepared plan can use the cursor as an index
/// bound).
///
/// It locks and updates rows of the narrow `event_queue` only (migration 0020), then reads
/// what the handler needs from `events` without writing it: the wide row is written once,
/// by the finish. The locking subquery is a MATERIALIZED CTE so that it runs exactly once:
/// written as `WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`, the planner may
/// re-run it and lock (and update) more than `n` rows. SKIP LOCKED makes concurrent
/// claimers take disjoint rows without waiting; the row lock re-checks the WHERE clause
/// after locking, so a row another claimer just committed is not taken twice. The UPDATE
/// finds the locked rows by `= ANY (ARRAY(…))`, one primary-key lookup each: written as
/// `FROM due WHERE q.event_row_id = due.event_row_id`, the planner, knowing the claim
/// takes 256 rows, hashed them and scanned the whole queue for every claim.
macro_rules! claim_sql {
    ($after:literal) => {
        concat!(
            "WITH due AS MATERIALIZED ( \
               SELECT event_row_id FROM event_queue \
               WHERE leased_until IS NULL AND run_at <= $1 ",
            $after,
            " ORDER BY run_at, event_row_id \
               LIMIT $3 \
               FOR NO KEY UPDATE SKIP LOCKED), \
             claimed AS ( \
               UPDATE event_queue q SET leased_until = $2, claimed_at = $1, attempt = q.attempt + 1 \
               WHERE q.event_row_id = ANY (ARRAY(SELECT event_row_id FROM due)) \
               RETURNING q.event_row_id, q.attempt, q.run_at) \
             SELECT e.id, e.source, e.event_id, c.attempt AS attempt_count, e.payload_json, \
               c.run_at AS next_attempt_at, e.replay_force <> 0 AS forced, \
               CASE WHEN e.replay_force <> 0 THEN NULL ELSE \
                 (SELECT json_agg(json_build_array(a.action, a.output_json)) FROM action_runs a \
                  WHERE a.event_row_id = e.id AND a.status = 'done')::text END AS done_runs, \
               CASE WHEN e.replay_force <> 0 THEN NULL ELSE e.result_json END AS result_json, \
               (SELECT value FROM switchyard_meta WHERE key = 'routing_version') AS routing_version \
             FROM claimed c JOIN events e ON e.id = c.event_row_id"
        )
    };
}

/// What one claim took: the events, the routing version read in the same snapshot (None
/// when nothing was claimed) and the claim time stored on them.
pub(super) struct Claim {
    pub(super) events: Vec<ClaimedEvent>,
    pub(super) version: Option<i64>,
    pub(super) at: DateTime<Utc>,
    pub(super) text: String,
}

/// Claims up to `limit` due events, oldest due first from where `cursor` says, and reads
/// the routing version in the same snapshot. An event replayed with `force` is handed over
/// without its done runs, so its actions run again.
pub(super) async fn claim_due(
    pool: &PgPool,
    cursor: &ClaimCursor,
    limit: usize,
    lease: Duration,
) -> Result<Claim, sqlx::Error> {
    let at = Utc::now();
    let now = time::format(at);
    let after = cursor.start();
    let query = match &after {
        None => sqlx::query(claim_sql!("")),
        Some(_) => sqlx::query(claim_sql!("AND (run_at, event_row_id) > ($4, $5)")),
    };
    let mut query = query
        .bind(&now)
        .bind(time::after(lease))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    if let Some((at, id)) = &after {
        query = query.bind(at).bind(id);
    }
    let rows = query.fetch_all(pool).await?;
    let mut last: Option<(String, i64)> = None;
    let mut claimed = Vec::with_capacity(rows.len());
    for r in &rows {
        let event = claimed_event(r)?;
        let key = (
            r.try_get::<Option<String>, _>("next_attempt_at")?.unwrap_or_default(),
            event.id,
        );
        if last.as_ref().is_none_or(|l| key > *l) {
            last = Some(key);
        }
        claimed.push(event);
    }
    cursor.advance(last, claimed.len() >= limit);
    claimed.sort_by_key(|c| c.id);
    let version = match rows.first() {
        Some(r) => Some(r.try_get::<Option<i64>, _>("routing_version")?.unwrap_or(0)),
        None => None,
    };
    Ok(Claim {
        events: claimed,
        version,
        at,
        text: now,
    })
}

/// One claimed event from a row of the claim statement.
fn claimed_event(r: &PgRow) -> Result<ClaimedEvent, sqlx::Error> {
    let id = r.try_get("id")?;
    let mut event = ClaimedEvent {
        id,
        source: rows::parse_word(
            r.try_get::<Option<&str>, _>("source")?.unwrap_or_default(),
            "events",
            id,
            "source",
        )?,
        event_id: r.try_get::<Option<String>, _>("event_id")?.unwrap_or_default(),
        attempt_count: r.try_get("attempt_count")?,
        payload_json: r.try_get::<Option<String>, _>("payload_json")?.unwrap_or_default(),
        done_runs: parse_done_runs(id, r.try_get::<Option<String>, _>("done_runs")?.as_deref())?,
        forced: r.try_get("forced")?,
    };
    resolve_outputs(&mut event, r.try_get("result_json")?);
    Ok(event)
}

/// Done runs whose output is the event's (`run_input::EVENT`) get it from the event's
/// result, read here rather than in SQL: a result that is not JSON (edited by hand) then
/// gives a null output instead of failing the whole claim. A fresh event has no result
/// and no done runs, so the claim carries no extra bytes for it.
fn resolve_outputs(event: &mut ClaimedEvent, result_json: Option<String>) {
    if !event
        .done_runs
        .iter()
        .any(|r| run_input::output_is_event(r.output_json.as_deref()))
    {
        return;
    }
    let result = result_json.map(|r| stored_result::expand(&r, Some(event.source), Some(&event.event_id)));
    for run in &mut event.done_runs {
        if run_input::output_is_event(run.output_json.as_deref()) {
            run.output_json = Some(run_input::output_of(result.as_deref()));
        }
    }
}

/// Reads `[[action, output_json], …]` as aggregated by the claim of event `row_id`.
///
/// Text that does not parse is an error naming the event: read as "no runs", it would
/// bypass the idempotency check and run actions that already ran.
fn parse_done_runs(row_id: i64, json: Option<&str>) -> Result<Vec<DoneRun>, sqlx::Error> {
    let Some(json) = json else { return Ok(Vec::new()) };
    let runs = serde_json::from_str::<Vec<(Option<String>, Option<String>)>>(json).map_err(|e| {
        sqlx::Error::Decode(format!("event {row_id}: unreadable done action runs aggregate: {e}").into())
    })?;
    Ok(runs
        .into_iter()
        .map(|(action, output_json)| DoneRun {
            action: action.unwrap_or_default(),
            output_json,
        })
        .collect())
}

/// Ids and attempts of claims as two arrays, in ascending id order (see `lock_claims!`).
fn claim_arrays(claims: &[ClaimRef]) -> (Vec<i64>, Vec<i64>) {
    let mut sorted = claims.to_vec();
    sorted.sort_unstable_by_key(|c| c.id);
    sorted.iter().map(|c| (c.id, c.attempt)).unzip()
}

/// The head of the statements that renew or give back several claims (`$1` ids in
/// ascending order, `$2` attempts): it locks their `event_queue` rows in that order, each
/// only while it still holds that claim (same attempt, under lease), before the statement
/// touches them; the statement joins this CTE (`id`, `attempt`, `claimed_at`). A renewal
/// passes `"SKIP LOCKED"` and so never waits on a finish (`finish.rs`), which locks its
/// rows by changing them. Every statement that writes both tables locks the queue rows
/// first, then the events rows.
///
/// Each row is locked by a lookup of its id, one after the other in array order (a
/// subquery with a locking clause is never merged into the join): a join that left the
/// choice to the planner scanned a whole index when its statistics said few rows were
/// claimed, and a renewal took a second mid-drain (docs/PERFORMANCE.md). The lease test
/// (`COALESCE(leased_until, '') <> ''`) is a filter on the row, never an index condition.
/// MATERIALIZED keeps the CTE from being folded into the statement.
macro_rules! lock_claims {
    () => {
        lock_claims!("")
    };
    ($wait:literal) => {
        concat!(
            "WITH claims AS MATERIALIZED ( \
               SELECT l.id, c.attempt, l.claimed_at FROM UNNEST($1::bigint[], $2::bigint[]) AS c(id, attempt) \
               CROSS JOIN LATERAL ( \
                 SELECT q.event_row_id AS id, q.claimed_at FROM event_queue q \
                 WHERE q.event_row_id = c.id AND q.attempt = c.attempt AND COALESCE(q.leased_until, '') <> '' \
                 FOR NO KEY UPDATE ",
            $wait,
            ") l) "
        )
    };
}

/// Extends the leases of the claims that still hold. A row another transaction has locked
/// is skipped: a finish (or a reclaim) is ending that claim, and a renewal that waited for
/// it while holding other rows could close a circle with a finish, which takes its rows
/// in two passes (`finish.rs`). A claim skipped by chance is renewed on the next round,
/// a third of a lease later.
pub(super) async fn renew_leases(pool: &PgPool, claims: &[ClaimRef], lease: Duration) -> Result<(), sqlx::Error> {
    let (ids, attempts) = claim_arrays(claims);
    sqlx::query(concat!(
        lock_claims!("SKIP LOCKED"),
        "UPDATE event_queue q SET leased_until = $3 WHERE q.event_row_id = ANY (ARRAY(SELECT id FROM claims))"
    ))
    .bind(&ids)
    .bind(&attempts)
    .bind(time::after(lease))
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives claims back: due at once, the attempt not counted, the event `retry` (as the
/// claim had never been taken, except for its `processing_started_at`).
pub(super) async fn release_claims(pool: &PgPool, claims: &[ClaimRef]) -> Result<u64, sqlx::Error> {
    let (ids, attempts) = claim_arrays(claims);
    let done = sqlx::query(concat!(
        lock_claims!(),
        ", back AS ( \
           UPDATE event_queue q SET leased_until = NULL, attempt = q.attempt - 1, run_at = $3 \
           WHERE q.event_row_id = ANY (ARRAY(SELECT id FROM claims)) \
           RETURNING q.event_row_id, q.attempt, q.claimed_at) \
         UPDATE events e SET status = 'retry', attempt_count = back.attempt, next_attempt_at = $3, \
           processing_started_at = back.claimed_at \
         FROM back WHERE e.id = back.event_row_id"
    ))
    .bind(&ids)
    .bind(&attempts)
    .bind(time::now())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Locks the expired claims in ascending id order (read from the queue without an index
/// since migration 0033: it holds only waiting and running events) and skips those another transaction
/// holds (a renewal or a finish in progress: the owner is alive, or the next pass sees
/// them), so a reclaim never waits on, or deadlocks with, a worker. Concurrent reclaimers
/// are safe: the row lock re-checks the WHERE clause on the newest row version. An event
/// out of attempts leaves the queue as `error`; the others wait again, due at once. The
/// same statement records the expired attempts.
pub(super) async fn reclaim_expired_leases(pool: &PgPool, max_attempts: u32) -> Result<Vec<Reclaimed>, sqlx::Error> {
    let now = time::now();
    let rows = sqlx::query(concat!(
        "WITH expired AS MATERIALIZED ( \
           SELECT event_row_id FROM event_queue \
           WHERE leased_until IS NOT NULL AND leased_until < $2 \
           ORDER BY event_row_id \
           FOR NO KEY UPDATE SKIP LOCKED), \
         gone AS ( \
           DELETE FROM event_queue q WHERE q.event_row_id = ANY (ARRAY(SELECT event_row_id FROM expired)) \
             AND q.attempt >= $1 \
           RETURNING q.event_row_id, q.attempt, q.claimed_at, true AS exhausted), \
         back AS ( \
           UPDATE event_queue q SET leased_until = NULL, run_at = $2 \
           WHERE q.event_row_id = ANY (ARRAY(SELECT event_row_id FROM expired)) AND q.attempt < $1 \
           RETURNING q.event_row_id, q.attempt, q.claimed_at, false AS exhausted), \
         moved AS (SELECT * FROM gone UNION ALL SELECT * FROM back), \
         applied AS ( \
           UPDATE events e SET \
             status = CASE WHEN m.exhausted THEN 'error' ELSE 'retry' END, \
             attempt_count = m.attempt, processing_started_at = m.claimed_at, \
             processed_at = CASE WHEN m.exhausted THEN $2 ELSE e.processed_at END, \
             last_error = $3, next_attempt_at = $2 \
           FROM moved m WHERE e.id = m.event_row_id \
           RETURNING e.id, e.event_id, m.exhausted, e.attempt_count, e.processing_started_at, e.status, \
             e.last_error), ",
        record_attempts!("$2", "NULL::bigint"),
        " SELECT id, event_id, exhausted FROM applied"
    ))
    .bind(i64::from(max_attempts))
    .bind(&now)
    .bind(LEASE_EXPIRED)
    .fetch_all(pool)
    .await?;
    let mut reclaimed = rows
        .iter()
        .map(|r| {
            Ok(Reclaimed {
                id: r.try_get("id")?,
                event_id: r.try_get("event_id")?,
                exhausted: r.try_get("exhausted")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    reclaimed.sort_by_key(|r| r.id);
    Ok(reclaimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_runs_are_read_and_a_malformed_aggregate_is_an_error_naming_the_event() {
        let runs = parse_done_runs(7, Some(r#"[["notify", "{\"ok\":true}"], ["log", null]]"#)).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(
            (runs[0].action.as_str(), runs[0].output_json.as_deref()),
            ("notify", Some(r#"{"ok":true}"#))
        );
        assert_eq!((runs[1].action.as_str(), runs[1].output_json.as_deref()), ("log", None));
        assert!(parse_done_runs(7, None).unwrap().is_empty());
        let err = parse_done_runs(42, Some("{not json")).unwrap_err().to_string();
        assert!(err.contains("event 42"), "{err}");
    }
}
