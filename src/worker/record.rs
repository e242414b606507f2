//! Storing outcomes without ever giving one up while the process runs.
//!
//! A computed outcome that is not stored is work thrown away: the lease expires and the
//! event runs again. So a batch the store refuses is tried again, then split in halves,
//! down to single outcomes, which are tried until the store takes them. The renewer keeps
//! the leases of all of them alive meanwhile (they stay in flight until stored).

use std::time::Duration;

use crate::store::{Db, Finish, Outcome, StoreError};

/// Tries of a batch of several outcomes that keeps failing for a transient reason before it
/// is split (a batch too large for the statement timeout passes in halves).
const BATCH_TRIES: u32 = 3;
/// Longest pause between two tries of one outcome while the database is unavailable.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Stores `finishes`; returns, for each one stored, its row id and whether its claim still
/// held (false: the lease had expired and someone else owns the event now).
pub(super) async fn store_outcomes(db: &Db, finishes: Vec<Finish>) -> Vec<(i64, bool)> {
    let mut stored = Vec::with_capacity(finishes.len());
    // Batches still to store, the next one last.
    let mut todo = vec![finishes];
    while let Some(mut batch) = todo.pop() {
        if batch.len() == 1
            && let Some(finish) = batch.pop()
        {
            stored.extend(store_one(db, finish).await);
            continue;
        }
        let mut tries = 0;
        loop {
            tries += 1;
            match db.finish_many(batch.clone()).await {
                Ok(applied) => {
                    stored.extend(batch.iter().map(|f| f.claim.id).zip(applied));
                    break;
                }
                Err(e) if e.is_transient() && tries < BATCH_TRIES => {
                    tracing::warn!(count = batch.len(), error = %e, "could not store outcomes; trying again");
                    tokio::time::sleep(pause(tries)).await;
                }
                Err(e) => {
                    tracing::warn!(count = batch.len(), error = %e, "could not store outcomes; storing them in halves");
                    let second = batch.split_off(batch.len() / 2);
                    todo.push(second);
                    todo.push(batch);
                    break;
                }
            }
        }
    }
    stored
}

/// Stores one outcome, trying for as long as the failure is transient. An outcome the
/// store refuses for good (a value the database cannot hold) is replaced by a failure that
/// says why, so the event ends visibly instead of running again and again.
async fn store_one(db: &Db, finish: Finish) -> Option<(i64, bool)> {
    let id = finish.claim.id;
    let mut finish = finish;
    let mut tries = 0;
    loop {
        tries += 1;
        match db.finish_many(vec![finish.clone()]).await {
            Ok(applied) => return Some((id, applied.first().copied().unwrap_or(false))),
            Err(e) if e.is_transient() => {
                tracing::warn!(row_id = id, tries, error = %e, "could not store an outcome; trying again");
                tokio::time::sleep(pause(tries)).await;
            }
            Err(e) if !matches!(finish.outcome, Outcome::Failed { .. }) || finish.action_run.is_some() => {
                tracing::error!(row_id = id, error = %e, "the store refused an outcome; recording the event as failed");
                finish = unstorable(finish, &e);
            }
            Err(e) => {
                tracing::error!(row_id = id, error = %e, "could not store the outcome; the lease will expire and the event will be retried");
                return None;
            }
        }
    }
}

/// The failure recorded in place of an outcome the store refused.
fn unstorable(finish: Finish, e: &StoreError) -> Finish {
    Finish {
        claim: finish.claim,
        outcome: Outcome::Failed {
            error: format!("the outcome of this attempt could not be stored: {e}"),
        },
        action_run: None,
        provider: finish.provider,
        action: finish.action,
        other_runs_read_event: finish.other_runs_read_event,
        fan_out: None,
    }
}

/// A random pause before try `tries + 1`: up to 50 ms doubling to [`MAX_PAUSE`].
fn pause(tries: u32) -> Duration {
    let ceiling = (Duration::from_millis(50) * 2u32.pow(tries.min(8))).min(MAX_PAUSE);
    ceiling.mul_f64(0.5 + fastrand::f64() * 0.5)
}
