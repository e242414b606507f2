//! The built-in scheduler (CONTRACT §9): one timer for the next due tick across all
//! schedules; each tick is enqueued as the cron event `cron:<job>:<tick>`, so any number of
//! instances on one database queue it exactly once (the `(source, event_id)` key).
//!
//! The schedules are re-read when their change counter moves: it is checked each time the
//! scheduler wakes (so a schedule disabled by another process never ticks again), on
//! PostgreSQL as soon as the trigger's NOTIFY arrives, and otherwise every
//! [`Options::recheck`] (1 s: how a schedule added by another process on SQLite is found,
//! and on PostgreSQL should a notification be lost with its connection).

pub mod clock;
pub mod due;
pub mod spec;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::watch;

use self::clock::Clock;
use self::spec::Compiled;
use crate::escape::escaped;
use crate::store::{Db, Enqueued, StoreError, StoredSchedule, TickRecord};
use crate::time::format_seconds;

/// The scheduler's timings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Longest wait before re-reading the schedules' change counter: how soon a change made
    /// by another process takes effect here without a notification (CONTRACT §9: 1 s).
    pub recheck: Duration,
    /// How late a tick may still be enqueued by a running process (older ones were missed).
    pub late_limit: Duration,
    /// Wait before trying again after a database error.
    pub retry: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            recheck: Duration::from_secs(1),
            late_limit: Duration::from_secs(60),
            retry: Duration::from_secs(1),
        }
    }
}

/// The scheduler task of one process.
pub struct Scheduler {
    db: Db,
    clock: Arc<dyn Clock>,
    options: Options,
}

/// One enabled schedule and the next tick it has not handled yet.
struct Entry {
    compiled: Compiled,
    payload: Map<String, Value>,
    cursor: Option<DateTime<Utc>>,
    /// Set at start-up: the ticks before this time fell while no process ran (missed).
    down_until: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    version: Option<i64>,
}

impl Scheduler {
    /// A scheduler over `db` reading time from `clock`.
    pub fn new(db: Db, clock: Arc<dyn Clock>, options: Options) -> Scheduler {
        Scheduler { db, clock, options }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut state = State::default();
        while !*stop.borrow() {
            let mut wake = self.clock.now() + self.options.recheck;
            let step = match self.refresh(&mut state).await {
                Ok(()) => self.fire_due(&mut state).await,
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                tracing::warn!(error = %e, "scheduler: database error; trying again shortly");
                wake = self.clock.now() + self.options.retry;
            }
            if let Some(next) = state.entries.values().filter_map(|e| e.cursor).min() {
                wake = wake.min(next);
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = self.clock.sleep_until(wake) => {}
                _ = self.db.schedules_changed() => {}
            }
        }
    }

    /// Re-reads the schedules when their change counter moved; unchanged ones keep their place.
    async fn refresh(&self, state: &mut State) -> Result<(), StoreError> {
        let version = self.db.schedules_version().await?;
        if state.version == Some(version) {
            return Ok(());
        }
        let start_up = state.version.is_none();
        let now = self.clock.now();
        let mut entries = HashMap::new();
        for row in self.db.schedules().await? {
            let job = row.schedule.job.clone();
            if !row.schedule.enabled {
                continue;
            }
            match state.entries.remove(&job) {
                Some(e) if e.compiled.schedule == row.schedule => {
                    entries.insert(job, e);
                }
                _ => {
                    if let Some(e) = load(row, start_up, now) {
                        entries.insert(job, e);
                    }
                }
            }
        }
        state.entries = entries;
        state.version = Some(version);
        Ok(())
    }

    /// Enqueues every due tick, then records them as each job's `last_scheduled_at`.
    async fn fire_due(&self, state: &mut State) -> Result<(), StoreError> {
        let now = self.clock.now();
        let late_limit = chrono::Duration::from_std(self.options.late_limit).unwrap_or(chrono::Duration::MAX);
        let mut records = Vec::new();
        let mut outcome = Ok(());
        for entry in state.entries.values_mut() {
            let Some(cursor) = entry.cursor.filter(|c| *c <= now) else {
                continue;
            };
            let recent = now.checked_sub_signed(late_limit).unwrap_or(DateTime::<Utc>::MIN_UTC);
            let horizon = recent.max(entry.down_until.unwrap_or(DateTime::<Utc>::MIN_UTC));
            let mut failed = None;
            for tick in due::due_ticks(&entry.compiled, cursor, now, horizon) {
                match self.enqueue(entry, tick).await {
                    Ok(()) => records.push(TickRecord {
                        job: entry.compiled.schedule.job.clone(),
                        at: format_seconds(tick),
                    }),
                    Err(e) => {
                        failed = Some(tick);
                        outcome = Err(e);
                        break;
                    }
                }
            }
            // A tick that could not be queued stays the cursor: the retry starts there.
            entry.cursor = failed.or_else(|| entry.compiled.next_after(now));
            if failed.is_none() {
                entry.down_until = None;
            }
        }
        if !records.is_empty() {
            self.db.record_ticks(records).await?;
        }
        outcome
    }

    async fn enqueue(&self, entry: &Entry, tick: DateTime<Utc>) -> Result<(), StoreError> {
        let job = &entry.compiled.schedule.job;
        let event = crate::cron::scheduled_event(job, tick, &entry.payload);
        let scheduled_at = format_seconds(tick);
        match self.db.enqueue(event).await? {
            Enqueued::Queued(row_id) => tracing::debug!(job = %escaped(job), scheduled_at, row_id, "cron tick queued"),
            Enqueued::Duplicate(row_id) => {
                tracing::debug!(
                    job = %escaped(job),
                    scheduled_at,
                    row_id,
                    "cron tick already queued by another instance"
                )
            }
        }
        Ok(())
    }
}

/// A schedule as read from the database; None (with a warning) when the stored row is
/// invalid, which only a hand edit can make.
fn load(row: StoredSchedule, start_up: bool, now: DateTime<Utc>) -> Option<Entry> {
    let job = row.schedule.job.clone();
    let payload = match serde_json::from_str::<Value>(&row.schedule.payload_json) {
        Ok(Value::Object(map)) => map,
        _ => {
            tracing::warn!(job = %escaped(&job), "skipping stored schedule: its payload is not a JSON object");
            return None;
        }
    };
    let compiled = match Compiled::new(row.schedule) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(job = %escaped(&job), error = %escaped(&e.to_string()), "skipping stored schedule");
            return None;
        }
    };
    // A schedule counts from its last tick or from when it became active (added, enabled,
    // re-timed), whichever is later, so a first tick that falls during a restart is missed,
    // not lost; never from the future (a clock ahead on the machine that added it).
    let parse = |s: Option<String>| {
        s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.to_utc().min(now))
    };
    let from = parse(row.last_scheduled_at).max(parse(row.active_since));
    let cursor = compiled.next_after(from.unwrap_or(now));
    tracing::info!(job = %escaped(&job), next = ?cursor.map(format_seconds), "schedule loaded");
    Some(Entry {
        compiled,
        payload,
        cursor,
        // Only at start-up did the ticks before now fall while no process ran.
        down_until: start_up.then_some(now),
    })
}
