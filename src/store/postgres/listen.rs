//! The LISTEN connection that wakes this instance's workers when another queues work, and
//! its scheduler when the schedules change.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;

use super::CHANNEL;
use super::schedules::SCHEDULES_CHANNEL;

/// The listener's reconnection back-off, first and longest.
const LISTEN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the listener pokes: one waiter per channel.
pub(super) struct Wakes {
    /// The worker's (new due work).
    pub events: Arc<Notify>,
    /// The scheduler's (a schedule changed).
    pub schedules: Arc<Notify>,
}

impl Wakes {
    /// After a (re)connection: notifications sent meanwhile are lost, so everyone re-reads.
    fn all(&self) {
        self.events.notify_one();
        self.schedules.notify_one();
    }
}

/// Keeps a LISTEN connection open for the life of the store, reconnecting with back-off.
pub(super) async fn listen_loop(options: PgConnectOptions, schema: String, wake: Wakes) {
    // A private one-connection pool: PgListener uses it to reconnect, and the LISTEN
    // connection never takes a slot from the main pool.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options);
    let mut backoff = LISTEN_BACKOFF_MIN;
    loop {
        let error = listen_session(&pool, &schema, &wake, &mut backoff).await;
        tracing::warn!(error = %error, retry_in_ms = backoff.as_millis() as u64,
            "LISTEN connection to PostgreSQL failed; reconnecting (workers poll meanwhile)");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

/// One LISTEN session: returns the error that ended it.
async fn listen_session(pool: &PgPool, schema: &str, wake: &Wakes, backoff: &mut Duration) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen_all([CHANNEL, SCHEDULES_CHANNEL]).await {
        return e;
    }
    tracing::info!(channel = CHANNEL, "listening for work queued by other instances");
    *backoff = LISTEN_BACKOFF_MIN;
    // Notifications sent while we were not listening are lost: make the worker re-scan.
    wake.all();
    loop {
        match listener.try_recv().await {
            // notify_one keeps one permit when the waiter is busy: a burst is one re-scan.
            Ok(Some(n)) if n.payload().is_empty() || n.payload() == schema => {
                if n.channel() == SCHEDULES_CHANNEL {
                    wake.schedules.notify_one();
                } else {
                    wake.events.notify_one();
                }
            }
            Ok(Some(_)) => {}
            // The connection dropped and PgListener has already reconnected and re-LISTENed.
            Ok(None) => {
                tracing::info!(channel = CHANNEL, "LISTEN connection re-established");
                wake.all();
            }
            Err(e) => return e,
        }
    }
}
