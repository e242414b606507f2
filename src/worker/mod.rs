//! The worker pool: claims due events under lease, processes them, records outcomes.
//!
//! One claim loop per process hands events to at most `WORKER_CONCURRENCY` tasks. It is
//! woken by an in-process `Notify` on every new event (and by PostgreSQL NOTIFY from other
//! instances); the poll interval is only the fallback. A renewer task extends the leases
//! of everything in flight; a reclaimer returns events whose lease expired.

pub mod backoff;
mod process;
mod record;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

pub use process::Processor;

use crate::store::{ClaimRef, Db, Finish};

/// Most events taken by one claim. Larger claims and finishes share the writer's
/// transactions among more events: 256 drained 13–17 % faster than 64 (docs/PERFORMANCE.md).
const MAX_CLAIM: usize = 256;
/// A handler quicker than this lets the pool claim ahead of its running handlers.
const FAST_HANDLER: Duration = Duration::from_millis(20);
/// Most outcomes stored by one store call.
const MAX_RECORD: usize = 256;

/// How the pool runs.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Events handled at once.
    pub concurrency: usize,
    /// Fallback poll when idle.
    pub poll_interval: Duration,
    /// Lease length.
    pub lease: Duration,
    /// Attempts before `error`.
    pub max_attempts: u32,
    /// Time in-flight events get to finish on shutdown.
    pub shutdown_grace: Duration,
}

type InFlight = Arc<Mutex<HashMap<i64, ClaimRef>>>;

/// Runs the pool until `shutdown` turns true; then waits up to the grace period for
/// in-flight events and releases the claims of those still running.
pub async fn run_pool(
    db: Db,
    processor: Arc<Processor>,
    cfg: PoolConfig,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    // `handlers` bounds running handlers (WORKER_CONCURRENCY). `permits` bounds claimed
    // events: while handlers are fast, one claim ahead of them, so the next claim overlaps
    // the running handlers instead of waiting for them (the drain benchmark is paced by
    // that overlap); while they are slow, only what can start now, so that idle workers of
    // other processes get the rest.
    let handlers = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1) + MAX_CLAIM));
    let fast = Arc::new(AtomicBool::new(false));
    let in_flight: InFlight = Arc::default();
    let mut tasks = JoinSet::new();
    let renewer = tokio::spawn(renew_loop(db.clone(), in_flight.clone(), cfg.lease));
    let reclaimer = tokio::spawn(reclaim_loop(db.clone(), cfg.lease, cfg.max_attempts, wake.clone()));
    // Unbounded in type only: every message carries a claim slot, so at most
    // WORKER_CONCURRENCY + MAX_CLAIM outcomes wait here.
    let (outcomes, outcome_rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_loop(processor.clone(), outcome_rx, in_flight.clone()));
    let mut error_backoff = Duration::from_millis(50);

    loop {
        if *shutdown.borrow() {
            break;
        }
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        let fast_now = fast.load(Ordering::Relaxed);
        if !fast_now {
            let free_handler = tokio::select! {
                p = handlers.clone().acquire_owned() => p,
                _ = shutdown.changed() => break,
            };
            drop(free_handler);
        }
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let cap = if fast_now {
            MAX_CLAIM
        } else {
            handlers.available_permits().clamp(1, MAX_CLAIM)
        };
        let mut held = vec![first];
        while held.len() < cap {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let claimed = match db.claim(held.len(), cfg.lease).await {
            Ok(c) => {
                error_backoff = Duration::from_millis(50);
                crate::metrics::claimed(c.len());
                c
            }
            Err(e) => {
                tracing::error!(error = %e, "claim failed; retrying");
                drop(held);
                tokio::select! {
                    () = tokio::time::sleep(error_backoff) => {}
                    _ = shutdown.changed() => break,
                }
                error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if claimed.is_empty() {
            drop(held);
            tokio::select! {
                () = wake.notified() => {}
                r = db.external_wake() => if let Err(e) = r { tracing::warn!(error = %e, "wake-up channel failed") },
                () = tokio::time::sleep(cfg.poll_interval) => {}
                _ = shutdown.changed() => break,
            }
            continue;
        }
        processor.refresh_routes().await;
        for (event, permit) in claimed.into_iter().zip(held.drain(..)) {
            let claim = event.claim_ref();
            lock(&in_flight).insert(claim.id, claim);
            let processor = processor.clone();
            let outcomes = outcomes.clone();
            let handlers = handlers.clone();
            let fast = fast.clone();
            tasks.spawn(async move {
                // The semaphore is never closed, so this waits rather than fails.
                let running = handlers.acquire_owned().await.ok();
                let started = Instant::now();
                let finish = processor.attempt(&event).await;
                fast.store(started.elapsed() < FAST_HANDLER, Ordering::Relaxed);
                drop(running);
                // The claim slot travels with the outcome and is freed once it is stored,
                // so a slow store holds the claim loop back instead of queueing outcomes.
                let _ = outcomes.send((finish, permit));
            });
        }
    }

    // Graceful shutdown: let running handlers finish, then give back what is left.
    let drained = tokio::time::timeout(cfg.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    // Every outcome sent is stored before anything is released.
    drop(outcomes);
    let _ = recorder.await;
    if drained.is_err() {
        let left: Vec<ClaimRef> = lock(&in_flight).values().copied().collect();
        match db.release(left.clone()).await {
            Ok(n) => tracing::info!(released = n, "released unfinished claims at shutdown"),
            Err(e) => {
                tracing::error!(error = %e, count = left.len(), "could not release claims; they return when their lease expires")
            }
        }
    }
    renewer.abort();
    reclaimer.abort();
}

/// Processes at most one due event (`worker --run-once`); true when one was processed.
pub async fn run_once(db: Db, processor: Arc<Processor>, cfg: &PoolConfig) -> Result<bool, crate::store::StoreError> {
    let reclaimed = db.reclaim_expired(cfg.max_attempts).await?;
    if !reclaimed.is_empty() {
        log_reclaimed(&reclaimed);
    }
    let Some(event) = db.claim(1, cfg.lease).await?.into_iter().next() else {
        return Ok(false);
    };
    processor.refresh_routes().await;
    let in_flight: InFlight = Arc::default();
    lock(&in_flight).insert(event.id, event.claim_ref());
    let renewer = tokio::spawn(renew_loop(db.clone(), in_flight, cfg.lease));
    processor.process(event).await;
    renewer.abort();
    Ok(true)
}

/// Stores outcomes as they come, many per store call: under load one writer request
/// (one wake-up of the writer) carries a whole batch of finished events.
async fn record_loop(
    processor: Arc<Processor>,
    mut rx: mpsc::UnboundedReceiver<(Finish, OwnedSemaphorePermit)>,
    in_flight: InFlight,
) {
    let mut batch = Vec::with_capacity(MAX_RECORD);
    while rx.recv_many(&mut batch, MAX_RECORD).await > 0 {
        let ids: Vec<i64> = batch.iter().map(|(f, _)| f.claim.id).collect();
        let (finishes, slots): (Vec<Finish>, Vec<OwnedSemaphorePermit>) = batch.drain(..).unzip();
        processor.record_many(finishes).await;
        drop(slots);
        let mut map = lock(&in_flight);
        for id in ids {
            map.remove(&id);
        }
    }
}

fn lock(m: &InFlight) -> std::sync::MutexGuard<'_, HashMap<i64, ClaimRef>> {
    // A panic while holding this lock cannot leave the map inconsistent; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn renew_loop(db: Db, in_flight: InFlight, lease: Duration) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let claims: Vec<ClaimRef> = lock(&in_flight).values().copied().collect();
        if claims.is_empty() {
            continue;
        }
        if let Err(e) = db.renew(claims, lease).await {
            tracing::warn!(error = %e, "lease renewal failed");
        }
    }
}

/// How many reclaimed events a log line names: a mass reclaim must not flood the log.
const RECLAIM_NAMED: usize = 20;

/// One warning naming the reclaimed events (`(row_id, event_id)`, the first
/// [`RECLAIM_NAMED`]) and how many of them ran out of attempts.
fn log_reclaimed(reclaimed: &[crate::store::Reclaimed]) {
    // Debug-formatted, so an event id holding a quote or newline cannot forge log text.
    let named: Vec<(i64, &str)> = reclaimed
        .iter()
        .take(RECLAIM_NAMED)
        .map(|r| (r.id, r.event_id.as_str()))
        .collect();
    tracing::warn!(
        count = reclaimed.len(),
        exhausted = reclaimed.iter().filter(|r| r.exhausted).count(),
        events = ?named,
        unnamed = reclaimed.len().saturating_sub(RECLAIM_NAMED),
        "reclaimed events whose lease expired"
    );
}

async fn reclaim_loop(db: Db, lease: Duration, max_attempts: u32, wake: Arc<Notify>) {
    let every = (lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match db.reclaim_expired(max_attempts).await {
            Ok(reclaimed) if reclaimed.is_empty() => {}
            Ok(reclaimed) => {
                log_reclaimed(&reclaimed);
                wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "reclaim failed"),
        }
    }
}
