//! The worker pool: claims due events under lease, processes them, records outcomes.
//!
//! One claim loop per process hands events to at most `WORKER_CONCURRENCY` tasks. It is
//! woken by an in-process `Notify` on every new event (and by PostgreSQL NOTIFY from other
//! instances); the poll interval is only the fallback. A renewer task extends the leases
//! of everything in flight; a reclaimer returns events whose lease expired.

pub mod backoff;
mod process;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

pub use process::Processor;

use crate::store::{ClaimRef, Db};

/// Most events taken by one claim.
const MAX_CLAIM: usize = 64;

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
    let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let in_flight: InFlight = Arc::default();
    let mut tasks = JoinSet::new();
    let renewer = tokio::spawn(renew_loop(db.clone(), in_flight.clone(), cfg.lease));
    let reclaimer = tokio::spawn(reclaim_loop(db.clone(), cfg.lease, cfg.max_attempts, wake.clone()));
    let mut error_backoff = Duration::from_millis(50);

    loop {
        if *shutdown.borrow() {
            break;
        }
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let mut held = vec![first];
        while held.len() < MAX_CLAIM {
            match permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        let claimed = match db.claim(held.len(), cfg.lease).await {
            Ok(c) => {
                error_backoff = Duration::from_millis(50);
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
            let in_flight = in_flight.clone();
            tasks.spawn(async move {
                let finish = processor.attempt(&event).await;
                // The permit bounds running handlers, not database round trips: hand it
                // back before the write so a slow commit does not idle the handlers.
                drop(permit);
                processor.record(finish).await;
                lock(&in_flight).remove(&claim.id);
            });
        }
    }

    // Graceful shutdown: let running handlers finish, then give back what is left.
    let drained = tokio::time::timeout(cfg.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
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
    db.reclaim_expired(cfg.max_attempts).await?;
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

async fn reclaim_loop(db: Db, lease: Duration, max_attempts: u32, wake: Arc<Notify>) {
    let every = (lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match db.reclaim_expired(max_attempts).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(count = n, "reclaimed events whose lease expired");
                wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "reclaim failed"),
        }
    }
}
