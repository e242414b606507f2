//! Stopping runs that a newer event superseded (`on_conflict: cancel_running`, CONTRACT §13).
//!
//! Admission marks the running slot in the store (any process may hold it); every process
//! looks for marks on the runs it holds twice a second, and only while it holds one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::Processor;

/// How often a process with runs holding flow slots asks whether one must stop.
const POLL: Duration = Duration::from_millis(500);

/// Runs holding a flow slot in this process, by event row id.
#[derive(Default)]
pub struct Registry {
    runs: Mutex<HashMap<i64, watch::Sender<Option<i64>>>>,
}

/// One registered event: whether (and by which event) it was cancelled.
pub struct Handle(watch::Receiver<Option<i64>>);

impl Handle {
    /// The superseding event, once a cancel arrived.
    pub fn cancelled_by(&self) -> Option<i64> {
        *self.0.borrow()
    }
}

/// Waits for a cancel of one event.
pub struct CancelWatch(watch::Receiver<Option<i64>>);

impl CancelWatch {
    /// Resolves when the run is to stop (never when its registration goes first).
    pub async fn wait(mut self) {
        if self.0.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, watch::Sender<Option<i64>>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a run that holds a slot.
    pub fn register(&self, row_id: i64) -> Handle {
        let (tx, rx) = watch::channel(None);
        self.lock().insert(row_id, tx);
        Handle(rx)
    }

    /// A watch on a registered run (`None` when the event has no slot).
    pub fn watch(&self, row_id: i64) -> Option<CancelWatch> {
        self.lock().get(&row_id).map(|tx| CancelWatch(tx.subscribe()))
    }

    /// Forgets a run.
    pub fn remove(&self, row_id: i64) {
        self.lock().remove(&row_id);
    }

    fn ids(&self) -> Vec<i64> {
        self.lock().keys().copied().collect()
    }

    fn cancel(&self, row_id: i64, by: i64) {
        if let Some(tx) = self.lock().get(&row_id) {
            tx.send_replace(Some(by));
        }
    }
}

/// Looks for cancel marks on this process's runs until the task is aborted.
pub async fn poll_loop(processor: Arc<Processor>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ids = processor.cancels.ids();
        if ids.is_empty() {
            continue;
        }
        match processor.db().flow_cancels(ids).await {
            Ok(marks) => {
                for (row_id, by) in marks {
                    tracing::info!(row_id, superseded_by = by, "stopping a run a newer event superseded");
                    processor.cancels.cancel(row_id, by);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look for cancelled runs"),
        }
    }
}
