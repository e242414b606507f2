//! The SQLite writer: one OS thread owning the only writing connection.
//!
//! It takes every request waiting in its queue (up to [`MAX_BATCH`]), runs them in one
//! `BEGIN IMMEDIATE … COMMIT` with cached prepared statements, and only then answers each
//! request through its oneshot: group commit, so many webhooks share one WAL commit. Under
//! load it waits [`LINGER`] for more before committing, so that a commit carries more.
//! It uses rusqlite on a plain thread rather than sqlx because every sqlx statement is a
//! round trip to sqlx's own worker thread; measured on the drain benchmark that hop, a few
//! per event, dominated the writer (see docs/PERFORMANCE.md). Reads stay on sqlx's pool.
//! WAL checkpoints run on another thread (`checkpoint`), not inside its commits.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::admin;
use super::attempts::{self, ClaimTimes, Ended};
use super::checkpoint::Checkpointer;
use super::enqueue::enqueue;
use super::*;
use crate::store::{rows, stored_payload, stored_result};
use crate::time;

/// Most requests folded into one transaction.
pub(super) const MAX_BATCH: usize = 512;

/// A batch of at least this many enqueues means webhooks are arriving faster than single
/// commits: the writer then waits [`LINGER`] for more before committing.
const LINGER_FROM: usize = 8;

/// How long a busy writer waits for more requests before it commits. Every commit rewrites
/// the last page of each index and of the table in the WAL whatever the batch carries, so
/// under load one wait of ~0.1 ms (0.15 ms with the kernel's timer slack) lets a commit carry
/// more requests: measured at 20 → 33 requests per commit and 0.98 → 0.74 WAL pages per
/// event, 5-9 % less writer CPU per event (docs/PERFORMANCE.md, issue 18). An idle service
/// never waits: a lone request is committed at once.
const LINGER: Duration = Duration::from_micros(100);

/// The writer's page cache, in KiB (SQLite's default is 2,000). Webhook ids that do not
/// arrive in sorted order (a counter's decimal text, GitHub's GUIDs) insert into the middle
/// of the `(source, event_id)` index; with the default cache those pages were read back from
/// the file for every insert once the index outgrew it (profiled: 4.3 % of ingest CPU in
/// `pread`). 16 MiB holds the index pages a long run touches; a larger cache costs more in
/// SQLite's scan of its page table at each commit than it saves.
const CACHE_KIB: u32 = 16 * 1024;

/// What a write request answers.
pub(super) enum OpResult {
    Enqueued(Enqueued),
    /// The events, and the routing version read in the same transaction.
    Claimed(Vec<ClaimedEvent>, i64),
    Bool(bool),
    Bools(Vec<bool>),
    Int(i64),
    Count(u64),
    Reclaimed(Vec<Reclaimed>),
    Transition(Transition),
    Verdict(crate::store::flow::FlowVerdict),
    Text(String),
    Unit,
}

/// A write request.
pub(super) enum Op {
    Enqueue(NewEvent),
    Claim {
        limit: usize,
        lease: Duration,
    },
    Renew {
        claims: Vec<ClaimRef>,
        lease: Duration,
    },
    Finish(Box<Finish>),
    FinishMany(Vec<Finish>),
    RoutingVersion,
    Release(Vec<ClaimRef>),
    Reclaim {
        max_attempts: u32,
    },
    StartRun(Box<ActionRunRecord>),
    Replay {
        id: i64,
        force: bool,
    },
    Cancel(i64),
    ReplayIds {
        ids: Vec<i64>,
        status: Option<String>,
    },
    Purge {
        status: String,
        before: String,
        limit: usize,
    },
    Apply(Box<RoutingChanges>),
    RecordTicks(Vec<TickRecord>),
    RecordUsage(Box<UsageRecord>),
    Hold {
        claim: ClaimRef,
        reason: String,
        until: String,
    },
    ReleaseHeld,
    DeleteRule {
        provider: String,
        name: String,
    },
    RevokeSession {
        nonce: String,
        expires_at: i64,
    },
    FlowAdmit(Box<crate::store::flow::FlowAsk>),
    FlowRelease(i64),
    FlowSupersedeRunning {
        claim: ClaimRef,
        action: String,
        by: i64,
    },
    FlowPause {
        pool: String,
        retry_after: Option<Duration>,
    },
    FlowPoolOk(String),
    FlowSweep {
        tidy: bool,
    },
}

/// A request and where its answer goes.
pub(super) struct WriteOp {
    pub op: Op,
    pub reply: oneshot::Sender<Result<OpResult, StoreError>>,
}

/// Opens the writing connection and starts the writer thread.
pub(super) fn start(path: &Path, synchronous: &str) -> Result<mpsc::Sender<WriteOp>, StoreError> {
    let conn = Connection::open(path).map_err(|e| {
        StoreError::Config(format!(
            "cannot open SQLite database {} (APP_DB_PATH): {e}",
            path.display()
        ))
    })?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // journal_mode answers with a row, so it is read rather than executed.
    let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA temp_store = memory; PRAGMA foreign_keys = off; \
         PRAGMA cache_size = -{CACHE_KIB};"
    ))?;
    // A read-only file (or directory) would otherwise open fine and fail every claim later.
    // A real (rolled back) write: taking the write lock alone succeeds on a read-only file.
    conn.execute_batch(
        "BEGIN IMMEDIATE; UPDATE switchyard_meta SET value = value WHERE key = 'routing_version'; ROLLBACK;",
    )
    .map_err(|e| {
        StoreError::Config(format!(
            "SQLite database {} (APP_DB_PATH) is not writable: {e}",
            path.display()
        ))
    })?;
    let checkpointer = Checkpointer::start(path, synchronous)?;
    checkpointer.watch(&conn);
    conn.set_prepared_statement_cache_capacity(64);

    let (tx, rx) = mpsc::channel(4096);
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || writer_loop(conn, rx, &checkpointer))
        .map_err(|e| StoreError::Config(format!("cannot start the SQLite writer thread: {e}")))?;
    Ok(tx)
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<WriteOp>, checkpointer: &Checkpointer) {
    let mut batch: Vec<WriteOp> = Vec::with_capacity(MAX_BATCH);
    let mut claims = ClaimTimes::default();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        take_waiting(&mut rx, &mut batch);
        // Only webhooks wait: a worker's claim or finish in the batch is worth more than a
        // fuller commit (waiting for them cost the `serve` benchmark a tenth of its ingest).
        if (LINGER_FROM..MAX_BATCH).contains(&batch.len()) && batch.iter().all(|w| matches!(w.op, Op::Enqueue(_))) {
            std::thread::sleep(LINGER);
            take_waiting(&mut rx, &mut batch);
        }
        match run_batch(&mut conn, &batch, &mut claims) {
            Ok(results) => {
                for (op, result) in batch.drain(..).zip(results) {
                    let _ = op.reply.send(Ok(result));
                }
            }
            Err(e) => {
                // One bad request must not fail the others: redo each alone.
                tracing::warn!(error = %e, size = batch.len(), "batched write failed; retrying one by one");
                // Claims of the rolled-back batch were noted; their finishes read the rows.
                claims.clear();
                for op in batch.drain(..) {
                    let result = run_batch(&mut conn, std::slice::from_ref(&op), &mut claims).map(|mut r| r.remove(0));
                    if result.is_err() {
                        claims.clear();
                    }
                    let _ = op.reply.send(result.map_err(StoreError::from));
                }
            }
        }
        checkpointer.committed();
        checkpointer.rewind_if_due(&conn);
    }
}

/// Moves the requests already queued into `batch`, up to [`MAX_BATCH`].
fn take_waiting(rx: &mut mpsc::Receiver<WriteOp>, batch: &mut Vec<WriteOp>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

/// The batch's clock, read once: every row it writes carries the same time.
struct Now {
    /// As stored.
    text: String,
    at: DateTime<Utc>,
}

/// Runs the requests in one transaction; results are in request order.
fn run_batch(conn: &mut Connection, batch: &[WriteOp], claims: &mut ClaimTimes) -> rusqlite::Result<Vec<OpResult>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let at = Utc::now();
    let now = Now {
        text: time::format(at),
        at,
    };
    let mut results = Vec::with_capacity(batch.len());
    let mut rest = batch;
    while let Some(first) = rest.first() {
        // A run of enqueues goes in as multi-row inserts; anything else one by one.
        let events: Vec<&NewEvent> = rest
            .iter()
            .map_while(|w| match &w.op {
                Op::Enqueue(e) => Some(e),
                _ => None,
            })
            .collect();
        if events.is_empty() {
            results.push(run_op(&tx, &first.op, &now, claims)?);
            rest = &rest[1..];
        } else {
            rest = &rest[events.len()..];
            results.extend(enqueue(&tx, &events, &now.text)?.into_iter().map(OpResult::Enqueued));
        }
    }
    tx.commit()?;
    Ok(results)
}

fn run_op(tx: &Transaction<'_>, op: &Op, clock: &Now, claims: &mut ClaimTimes) -> rusqlite::Result<OpResult> {
    let now = clock.text.as_str();
    Ok(match op {
        Op::Enqueue(e) => match enqueue(tx, &[e], now)?.pop() {
            Some(outcome) => OpResult::Enqueued(outcome),
            None => return Err(rusqlite::Error::QueryReturnedNoRows),
        },
        Op::Claim { limit, lease } => {
            OpResult::Claimed(claim(tx, *limit, *lease, clock, claims)?, routing_version(tx)?)
        }
        Op::Renew { claims: renewed, lease } => {
            let until = time::after(*lease);
            let mut stmt = tx.prepare_cached(
                "UPDATE events SET lease_until = ?1 WHERE id = ?2 AND attempt_count = ?3 AND status = 'processing'",
            )?;
            for c in renewed {
                stmt.execute(params![until, c.id, c.attempt])?;
            }
            OpResult::Unit
        }
        Op::Finish(f) => OpResult::Bool(finish_many(tx, std::slice::from_ref(f), clock, claims)? == [true]),
        Op::FinishMany(fs) => OpResult::Bools(finish_many(tx, fs, clock, claims)?),
        Op::RoutingVersion => OpResult::Int(routing_version(tx)?),
        Op::Release(released) => {
            let mut stmt = tx.prepare_cached(
                "UPDATE events SET status = 'retry', attempt_count = attempt_count - 1, next_attempt_at = ?1, \
                 lease_until = NULL WHERE id = ?2 AND attempt_count = ?3 AND status = 'processing'",
            )?;
            let mut n = 0;
            for c in released {
                n += stmt.execute(params![now, c.id, c.attempt])? as u64;
                claims.forget(c.id);
            }
            OpResult::Count(n)
        }
        Op::Reclaim { max_attempts } => {
            let mut stmt = tx.prepare_cached(
                "UPDATE events SET \
               status = CASE WHEN attempt_count >= ?1 THEN 'error' ELSE 'retry' END, \
               processed_at = CASE WHEN attempt_count >= ?1 THEN ?2 ELSE processed_at END, \
               last_error = 'lease expired: the worker holding this event stopped or stalled', \
               next_attempt_at = ?2, lease_until = NULL \
             WHERE status = 'processing' AND (lease_until IS NULL OR lease_until < ?2) \
             RETURNING id, event_id, status = 'error'",
            )?;
            let rows = stmt.query_map(params![max_attempts, now], |r| {
                Ok(Reclaimed {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    exhausted: r.get(2)?,
                })
            })?;
            let mut reclaimed = rows.collect::<Result<Vec<_>, _>>()?;
            // RETURNING's order is unspecified; the log lists them by row id.
            reclaimed.sort_by_key(|r| r.id);
            for r in &reclaimed {
                claims.forget(r.id);
                attempts::record(tx, r.id, now)?;
            }
            OpResult::Reclaimed(reclaimed)
        }
        Op::StartRun(run) => {
            upsert_action_run(tx, run)?;
            OpResult::Unit
        }
        Op::Replay { id, force } => OpResult::Transition(admin::replay(tx, *id, *force, now)?),
        Op::Cancel(id) => OpResult::Transition(admin::cancel(tx, *id, now)?),
        Op::ReplayIds { ids, status } => OpResult::Count(admin::replay_ids(tx, ids, status.as_deref(), now)?),
        Op::Purge { status, before, limit } => OpResult::Count(admin::purge(tx, status, before, *limit)?),
        Op::Apply(changes) => {
            apply(tx, changes, now)?;
            schedules::upsert(tx, &changes.schedules, now)?;
            super::spend::upsert_budgets(tx, &changes.budgets, now)?;
            OpResult::Unit
        }
        Op::RecordTicks(ticks) => {
            schedules::record(tx, ticks)?;
            OpResult::Unit
        }
        Op::RecordUsage(record) => {
            super::spend::record(tx, record)?;
            OpResult::Unit
        }
        Op::Hold { claim, reason, until } => {
            claims.forget(claim.id);
            OpResult::Bool(super::spend::hold(tx, *claim, reason, until)?)
        }
        Op::ReleaseHeld => OpResult::Count(super::spend::release_held(tx, now)?),
        Op::DeleteRule { provider, name } => OpResult::Bool(
            tx.prepare_cached("DELETE FROM routing_rules WHERE provider = ?1 AND name = ?2")?
                .execute(params![provider, name])?
                == 1,
        ),
        Op::RevokeSession { nonce, expires_at } => {
            super::sessions::revoke(tx, nonce, *expires_at)?;
            OpResult::Unit
        }
        Op::FlowAdmit(ask) => OpResult::Verdict(super::flow::admit(tx, ask, now)?),
        Op::FlowRelease(id) => OpResult::Count(super::flow::release(tx, *id, now)?),
        Op::FlowSupersedeRunning { claim, action, by } => {
            OpResult::Bool(super::flow::supersede_running(tx, *claim, action, *by, now)?)
        }
        Op::FlowPause { pool, retry_after } => OpResult::Text(super::flow::pause(tx, pool, *retry_after, now)?),
        Op::FlowPoolOk(pool) => {
            tx.prepare_cached(&super::spend::sql(crate::store::flow::sql::POOL_OK))?
                .execute(params![pool])?;
            OpResult::Unit
        }
        Op::FlowSweep { tidy } => OpResult::Count(super::flow::sweep(tx, *tidy, now)?),
    })
}

/// The counter that routing changes bump (migration 0002's triggers).
fn routing_version(tx: &Transaction<'_>) -> rusqlite::Result<i64> {
    Ok(tx
        .prepare_cached("SELECT value FROM switchyard_meta WHERE key = 'routing_version'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Claims up to `limit` due events, oldest due first: a select on the due index, then one
/// update by row id per event. Inside the writer's transaction nothing else writes between
/// the two. As one `UPDATE … WHERE id IN (SELECT …) RETURNING …` it cost two ephemeral
/// tables and a statement journal per claim.
fn claim(
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
    for event in &mut claimed {
        take.execute(params![now, until, event.attempt_count, event.id])?;
        claims.claimed(event.id, event.attempt_count, now, clock.at);
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

/// Stores each outcome as [`finish`] does, then the attempts the finishes ended together.
fn finish_many(
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
struct StoredEvent {
    payload: Option<String>,
    /// The result as read ([`stored_result::expand`]).
    result: Option<String>,
}

fn stored_event(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<StoredEvent> {
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

fn upsert_action_run(tx: &Transaction<'_>, run: &ActionRunRecord) -> rusqlite::Result<()> {
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

fn apply(tx: &Transaction<'_>, changes: &RoutingChanges, now: &str) -> rusqlite::Result<()> {
    let mut mapping = tx.prepare_cached(
        "INSERT INTO provider_mappings (provider, action, handler_mode, handler_target, enabled, updated_at, \
         flow_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(provider) DO UPDATE SET action = excluded.action, \
         handler_mode = excluded.handler_mode, handler_target = excluded.handler_target, \
         enabled = excluded.enabled, updated_at = excluded.updated_at, flow_json = excluded.flow_json",
    )?;
    for m in &changes.mappings {
        mapping.execute(params![
            m.provider,
            m.action,
            m.handler_mode.as_str(),
            m.handler_target,
            i64::from(m.enabled),
            now,
            rows::flow_json(m.flow.as_ref()),
        ])?;
    }
    let mut rule = tx.prepare_cached(
        "INSERT INTO routing_rules (provider, name, priority, conditions_json, action, handler_mode, \
         handler_target, enabled, updated_at, continue_after_match, flow_json) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT(provider, name) DO UPDATE SET priority = excluded.priority, \
         conditions_json = excluded.conditions_json, action = excluded.action, \
         handler_mode = excluded.handler_mode, handler_target = excluded.handler_target, \
         enabled = excluded.enabled, updated_at = excluded.updated_at, \
         continue_after_match = excluded.continue_after_match, flow_json = excluded.flow_json",
    )?;
    for r in &changes.rules {
        rule.execute(params![
            r.provider,
            r.name,
            r.priority,
            r.conditions_json,
            r.action,
            r.handler_mode.as_str(),
            r.handler_target,
            i64::from(r.enabled),
            now,
            i64::from(r.continue_after_match),
            rows::flow_json(r.flow.as_ref()),
        ])?;
    }
    let mut pool = tx.prepare_cached(&super::spend::sql(crate::store::flow::sql::UPSERT_POOL))?;
    for p in &changes.pools {
        pool.execute(params![p.name, p.limit, now])?;
    }
    Ok(())
}
