//! The worker pool: claims due events under lease, processes them, records outcomes.
//!
//! One claim loop per process hands events to at most `WORKER_CONCURRENCY` tasks. It is
//! woken by an in-process `Notify` on every new event (and by PostgreSQL NOTIFY from other
//! instances); the poll interval is only the fallback. A renewer task extends the leases
//! of everything in flight; a reclaimer returns events whose lease expired.

pub mod backoff;
mod cancel;
mod process;
mod record;
mod usage;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use process::{Processor, Slots};

use crate::store::{ClaimRef, ClaimedEvent, Db, Finish};

/// Full claims ([`crate::store::Store::claim_batch`] events each) that may be held beyond
/// the running handlers, besides one per finish call
/// the store runs at once ([`crate::store::Store::finish_parallelism`]): one being claimed
/// and handled while the others are stored. With none, a slot came back only once its
/// outcome was stored, so on PostgreSQL the claim of the next batch waited for the finish
/// of the last (docs/PERFORMANCE.md, issue 17).
const CLAIMS_AHEAD: usize = 1;
/// A handler quicker than this lets the pool claim ahead of its running handlers.
const FAST_HANDLER: Duration = Duration::from_millis(20);

/// How the pool runs.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Handlers running at once (an event's, or each running action of a fan-out event).
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
    let mut pool = Pool::new(db, processor, cfg, wake);
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Reap finished tasks so the set does not grow.
        while pool.tasks.try_join_next().is_some() {}
        let step = match pool.reserve(&mut shutdown).await {
            Some(slots) => pool.claim(slots, &mut shutdown).await,
            None => Step::Stop,
        };
        match step {
            Step::Stop => break,
            Step::Again => {}
            Step::Run(claimed) => pool.spawn(claimed).await,
        }
    }
    pool.stop().await;
}

/// What the claim loop does next.
enum Step {
    /// Shutdown was asked for.
    Stop,
    /// Nothing was claimed (idle queue or a failed claim, already waited out): loop.
    Again,
    /// Events claimed, each with its claim slot.
    Run(Vec<(ClaimedEvent, OwnedSemaphorePermit)>),
}

/// The claim loop's state: the bounds on running handlers and claimed events, the tasks
/// that run attempts and the loops beside them.
struct Pool {
    db: Db,
    processor: Arc<Processor>,
    cfg: PoolConfig,
    wake: Arc<Notify>,
    /// Bounds running handlers (WORKER_CONCURRENCY).
    handlers: Arc<Semaphore>,
    /// Most events one claim takes ([`crate::store::Store::claim_batch`]).
    claim_batch: usize,
    /// Bounds claimed events: while handlers are fast, up to [`CLAIMS_AHEAD`] claims ahead
    /// of them, so the next claim overlaps the running handlers and the storing of the last
    /// batch's outcomes instead of waiting for them (the drain benchmark is paced by that
    /// overlap); while they are slow, only what can start now, so that idle workers of
    /// other processes get the rest.
    permits: Arc<Semaphore>,
    /// Whether the last attempt was quicker than [`FAST_HANDLER`].
    fast: Arc<AtomicBool>,
    in_flight: InFlight,
    tasks: JoinSet<()>,
    /// Unbounded in type only: every message carries a claim slot, so at most
    /// WORKER_CONCURRENCY + (CLAIMS_AHEAD + finish calls) * claim batch outcomes wait here.
    outcomes: mpsc::UnboundedSender<(Finish, OwnedSemaphorePermit)>,
    recorder: JoinHandle<()>,
    renewer: JoinHandle<()>,
    reclaimer: JoinHandle<()>,
    /// Looks for cancel marks on runs holding flow slots ([`cancel`]).
    canceller: JoinHandle<()>,
    /// Flow control's housekeeping ([`flow_loop`]).
    flow_keeper: JoinHandle<()>,
    error_backoff: Duration,
}

impl Pool {
    fn new(db: Db, processor: Arc<Processor>, cfg: PoolConfig, wake: Arc<Notify>) -> Pool {
        processor.set_wake(wake.clone());
        let in_flight: InFlight = Arc::default();
        let (outcomes, outcome_rx) = mpsc::unbounded_channel();
        let claim_batch = db.claim_batch().max(1);
        Pool {
            handlers: Arc::new(Semaphore::new(cfg.concurrency.max(1))),
            claim_batch,
            permits: Arc::new(Semaphore::new(
                cfg.concurrency.max(1) + (CLAIMS_AHEAD + db.finish_parallelism().max(1)) * claim_batch,
            )),
            fast: Arc::new(AtomicBool::new(false)),
            tasks: JoinSet::new(),
            renewer: tokio::spawn(renew_loop(db.clone(), in_flight.clone(), cfg.lease)),
            reclaimer: tokio::spawn(reclaim_loop(db.clone(), cfg.lease, cfg.max_attempts, wake.clone())),
            recorder: tokio::spawn(record_loop(
                processor.clone(),
                outcome_rx,
                in_flight.clone(),
                db.finish_parallelism(),
                claim_batch,
            )),
            canceller: tokio::spawn(cancel::poll_loop(processor.clone())),
            flow_keeper: tokio::spawn(flow_loop(db.clone(), wake.clone())),
            outcomes,
            in_flight,
            error_backoff: Duration::from_millis(50),
            db,
            processor,
            cfg,
            wake,
        }
    }

    /// Claim slots for the next claim (at least one); None on shutdown.
    async fn reserve(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Vec<OwnedSemaphorePermit>> {
        let fast_now = self.fast.load(Ordering::Relaxed);
        if !fast_now {
            let free_handler = tokio::select! {
                p = self.handlers.clone().acquire_owned() => p,
                _ = shutdown.changed() => return None,
            };
            drop(free_handler);
        }
        let first = tokio::select! {
            p = self.permits.clone().acquire_owned() => p.ok()?,
            _ = shutdown.changed() => return None,
        };
        let cap = if fast_now {
            self.claim_batch
        } else {
            self.handlers.available_permits().clamp(1, self.claim_batch)
        };
        let mut held = vec![first];
        while held.len() < cap {
            match self.permits.clone().try_acquire_owned() {
                Ok(p) => held.push(p),
                Err(_) => break,
            }
        }
        Some(held)
    }

    /// Claims up to one event per slot; on an empty queue or an error, waits (for a wake-up,
    /// the poll interval or the back-off) before saying [`Step::Again`].
    async fn claim(&mut self, slots: Vec<OwnedSemaphorePermit>, shutdown: &mut watch::Receiver<bool>) -> Step {
        let pause = match self.db.claim(slots.len(), self.cfg.lease).await {
            Ok(c) if !c.is_empty() => {
                self.error_backoff = Duration::from_millis(50);
                crate::metrics::claimed(c.len());
                return Step::Run(c.into_iter().zip(slots).collect());
            }
            Ok(_) => {
                self.error_backoff = Duration::from_millis(50);
                crate::metrics::claimed(0);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "claim failed; retrying");
                let pause = self.error_backoff;
                self.error_backoff = (self.error_backoff * 2).min(Duration::from_secs(5));
                Some(pause)
            }
        };
        drop(slots);
        match pause {
            Some(pause) => tokio::select! {
                () = tokio::time::sleep(pause) => Step::Again,
                _ = shutdown.changed() => Step::Stop,
            },
            None => tokio::select! {
                () = self.wake.notified() => Step::Again,
                r = self.db.external_wake() => {
                    if let Err(e) = r { tracing::warn!(error = %e, "wake-up channel failed") }
                    Step::Again
                }
                () = tokio::time::sleep(self.cfg.poll_interval) => Step::Again,
                _ = shutdown.changed() => Step::Stop,
            },
        }
    }

    /// Starts one task per claimed event; each sends its outcome to the recorder.
    async fn spawn(&mut self, claimed: Vec<(ClaimedEvent, OwnedSemaphorePermit)>) {
        self.processor.refresh_routes().await;
        for (event, permit) in claimed {
            let claim = event.claim_ref();
            lock(&self.in_flight).insert(claim.id, claim);
            let processor = self.processor.clone();
            let outcomes = self.outcomes.clone();
            let handlers = self.handlers.clone();
            let fast = self.fast.clone();
            let in_flight = self.in_flight.clone();
            let task = async move {
                // The semaphore is never closed, so this waits rather than fails.
                let running = handlers.clone().acquire_owned().await.ok();
                let started = Instant::now();
                // The held slot is given back when the attempt's (first) handler ends.
                // Boxed, so that the task tokio moves around is a few words, not the
                // attempt's kilobytes.
                let finish = Box::pin(processor.attempt(&event, Slots::new(running, handlers))).await;
                fast.store(started.elapsed() < FAST_HANDLER, Ordering::Relaxed);
                match finish {
                    // The claim slot travels with the outcome and is freed once it is
                    // stored, so a slow store holds the claim loop back instead of
                    // queueing outcomes.
                    Some(finish) => {
                        let _ = outcomes.send((finish, permit));
                    }
                    // Held: already stored, nothing in flight any more.
                    None => {
                        lock(&in_flight).remove(&claim.id);
                    }
                }
            };
            self.tasks.spawn(task);
        }
    }

    /// Graceful shutdown: lets running handlers finish, stores every outcome sent, then
    /// gives back the claims of what is left.
    async fn stop(mut self) {
        let grace = self.cfg.shutdown_grace;
        let drained = tokio::time::timeout(grace, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        // Every outcome sent is stored before anything is released.
        drop(self.outcomes);
        let _ = self.recorder.await;
        if drained.is_err() {
            let left: Vec<ClaimRef> = lock(&self.in_flight).values().copied().collect();
            match self.db.release(left.clone()).await {
                Ok(n) => tracing::info!(released = n, "released unfinished claims at shutdown"),
                Err(e) => {
                    tracing::error!(error = %e, count = left.len(), "could not release claims; they return when their lease expires")
                }
            }
        }
        self.renewer.abort();
        self.reclaimer.abort();
        self.canceller.abort();
        self.flow_keeper.abort();
    }
}

/// Processes at most one due event (`worker --run-once`); true when one was processed.
pub async fn run_once(db: Db, processor: Arc<Processor>, cfg: &PoolConfig) -> Result<bool, crate::store::StoreError> {
    let reclaimed = db.reclaim_expired(cfg.max_attempts).await?;
    if !reclaimed.is_empty() {
        log_reclaimed(&reclaimed);
    }
    db.release_held().await?;
    db.flow_sweep(true).await?;
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

/// Stores outcomes as they come, many per store call: under load one store call carries a
/// whole batch of finished events. Up to `parallel` calls run at once, each taking what
/// queued up while the others ran, up to `most` (a claim's worth: on PostgreSQL, 512 per
/// call drained ~5 % faster than 256, docs/PERFORMANCE.md); it returns once every outcome
/// sent is stored.
async fn record_loop(
    processor: Arc<Processor>,
    mut rx: mpsc::UnboundedReceiver<(Finish, OwnedSemaphorePermit)>,
    in_flight: InFlight,
    parallel: usize,
    most: usize,
) {
    let calls = Arc::new(Semaphore::new(parallel.max(1)));
    let mut running = JoinSet::new();
    loop {
        // The semaphore is never closed. Taken before the outcomes, so that while every
        // call is busy the outcomes wait in the channel and go together into the next one.
        let Ok(call) = calls.clone().acquire_owned().await else {
            break;
        };
        let mut batch = Vec::with_capacity(most);
        if rx.recv_many(&mut batch, most.max(1)).await == 0 {
            break;
        }
        let processor = processor.clone();
        let in_flight = in_flight.clone();
        running.spawn(async move {
            let ids: Vec<i64> = batch.iter().map(|(f, _)| f.claim.id).collect();
            let (finishes, slots): (Vec<Finish>, Vec<OwnedSemaphorePermit>) = batch.into_iter().unzip();
            processor.record_many(finishes).await;
            drop(slots);
            let mut map = lock(&in_flight);
            for id in ids {
                map.remove(&id);
            }
            drop(call);
        });
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
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
    // `row_id:event_id` pairs, each id escaped so that it cannot forge log text.
    let mut named = String::new();
    for r in reclaimed.iter().take(RECLAIM_NAMED) {
        use std::fmt::Write;
        let _ = write!(
            named,
            "{}{}:{}",
            if named.is_empty() { "" } else { " " },
            r.id,
            crate::escape::escaped(&r.event_id)
        );
    }
    tracing::warn!(
        count = reclaimed.len(),
        exhausted = reclaimed.iter().filter(|r| r.exhausted).count(),
        events = %named,
        unnamed = reclaimed.len().saturating_sub(RECLAIM_NAMED),
        "reclaimed events whose lease expired"
    );
}

/// How often flow control's waits whose time came (debounce, rate, a paused pool) are made
/// due, and slots of dead processes freed: the precision of those waits.
const FLOW_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Every how many sweeps the tidying that grows with the lines runs (once a minute).
const FLOW_TIDY_EVERY: u64 = 60;

/// Flow control's housekeeping (CONTRACT §13): once a second the cheap part (timed waits,
/// dead processes' slots), once a minute the tidying.
async fn flow_loop(db: Db, wake: Arc<Notify>) {
    let mut tick = tokio::time::interval(FLOW_SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        match db.flow_sweep(n % FLOW_TIDY_EVERY == 0).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(count = n, "waiting events due again");
                wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "flow housekeeping failed"),
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
            Ok(reclaimed) if reclaimed.is_empty() => {}
            Ok(reclaimed) => {
                log_reclaimed(&reclaimed);
                wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "reclaim failed"),
        }
        // Held events whose time came are due again (a budget period ended, or it is time
        // to look whether the budget was raised).
        match db.release_held().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(count = n, "held events due again");
                wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "releasing held events failed"),
        }
    }
}
