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
use super::attempts::{self, ClaimTimes};
use super::checkpoint::Checkpointer;
use super::claim::claim;
use super::enqueue::enqueue;
use super::finish::{finish_many, upsert_action_run};
use super::*;
use crate::store::rows;
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
pub(super) struct Now {
    /// As stored.
    pub(super) text: String,
    pub(super) at: DateTime<Utc>,
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
