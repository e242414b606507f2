//! Repeating an operation that failed for a reason a second try can get past: its
//! connection died, or PostgreSQL aborted its transaction to break a deadlock or a
//! serialization conflict.

use std::future::Future;
use std::time::Duration;

/// Most tries of an operation that keeps losing lock conflicts; beyond that the caller
/// sees the error (the worker's recorder then splits and retries; renewals and reclaims
/// run again at their next tick).
pub(super) const CONFLICT_TRIES: u32 = 10;

/// Errors meaning the connection died under the operation (it was killed, the server
/// restarted); the operation can be tried again on a fresh connection.
pub(super) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Errors meaning PostgreSQL rolled the transaction back to resolve a conflict with
/// another one: `deadlock_detected` (40P01) or `serialization_failure` (40001). Nothing of
/// the transaction was written, and the same transaction will usually pass when tried again.
pub(super) fn lock_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// Most tries of an operation whose connection keeps dying (the server restarting, every
/// connection being terminated): with [`reconnect_pause`] between them, about 1.5 s in
/// all, longer than a server's fast restart and than the one-per-second kills of the
/// tests; beyond that the caller sees the error (and retries at its own pace).
pub(super) const RECONNECT_TRIES: u32 = 6;

/// A random pause before try number `tries + 1` after a lost connection: 25–50 ms
/// doubling to 400–800 ms, so a burst of killed connections is not answered by a burst of
/// reconnections at the same instant.
pub(super) fn reconnect_pause(tries: u32) -> Duration {
    let ceiling = 50u64 << tries.min(4);
    Duration::from_millis(fastrand::u64(ceiling / 2..=ceiling))
}

/// A short random pause before try number `tries + 1` after a lock conflict: 1–2 ms
/// doubling to 64–128 ms. Random, so that the two sides of a deadlock do not meet again
/// in step.
pub(super) fn conflict_pause(tries: u32) -> Duration {
    let ceiling = 2u64 << tries.min(6);
    Duration::from_micros(fastrand::u64(ceiling * 500..=ceiling * 1000))
}

/// Runs `op` until it succeeds or fails for good: again after a lock conflict (up to
/// [`CONFLICT_TRIES`] tries, with [`conflict_pause`] between them), and on a fresh
/// connection if its connection was lost (up to [`RECONNECT_TRIES`], with
/// [`reconnect_pause`]). Only for operations that are safe to repeat: fenced updates,
/// upserts, reads, and transactions that failed before COMMIT.
pub(super) async fn retry<T, F, Fut>(what: &'static str, mut op: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let (mut conflicts, mut reconnects) = (0u32, 0u32);
    loop {
        match op().await {
            Err(e) if lock_conflict(&e) && conflicts + 1 < CONFLICT_TRIES => {
                tracing::debug!(operation = what, error = %e, "lock conflict; trying again");
                tokio::time::sleep(conflict_pause(conflicts)).await;
                conflicts += 1;
            }
            Err(e) if connection_lost(&e) && reconnects + 1 < RECONNECT_TRIES => {
                tracing::warn!(operation = what, error = %e, "PostgreSQL connection lost; retrying on a fresh connection");
                // The first retry at once: a connection killed while idle in the pool is
                // the common case, and the next one is usually fine.
                if reconnects > 0 {
                    tokio::time::sleep(reconnect_pause(reconnects - 1)).await;
                }
                reconnects += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_pauses_are_short_random_and_grow_to_a_cap() {
        for tries in 0..20 {
            let p = conflict_pause(tries);
            let ceiling = Duration::from_millis(2 << tries.min(6));
            assert!(p >= ceiling / 2 && p <= ceiling, "try {tries}: {p:?}");
        }
        assert!(conflict_pause(30) <= Duration::from_millis(128));
    }

    #[test]
    fn reconnect_pauses_grow_to_a_cap() {
        for tries in 0..20 {
            let p = reconnect_pause(tries);
            let ceiling = Duration::from_millis(50 << tries.min(4));
            assert!(p >= ceiling / 2 && p <= ceiling, "try {tries}: {p:?}");
        }
        assert!(reconnect_pause(30) <= Duration::from_millis(800));
    }
}
