//! Time as the scheduler sees it: the system clock, or a fake one that tests move by hand
//! (so DST and downtime tests run in milliseconds).

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A boxed sleep.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the scheduler reads the time and waits for it.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Resolves at or after `at`.
    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_> {
        // A monotonic sleep for the distance now; the scheduler re-reads the wall clock
        // when it wakes, so a clock step only makes it look again.
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to; it shows whether its sleeper is asleep.
#[derive(Debug)]
pub struct FakeClock {
    now: watch::Sender<DateTime<Utc>>,
    /// (id of the latest sleep, its deadline while that sleep is pending).
    asleep: watch::Sender<(u64, Option<DateTime<Utc>>)>,
}

impl FakeClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> FakeClock {
        FakeClock {
            now: watch::channel(start).0,
            asleep: watch::channel((0, None)).0,
        }
    }

    /// Moves the clock to `t` (waking sleepers whose deadline passed).
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_replace(t);
    }

    /// Waits until a sleep with a deadline still ahead is pending: the sleeper has done all
    /// it could at the current time. Returns that deadline.
    pub async fn asleep(&self) -> DateTime<Utc> {
        let mut rx = self.asleep.subscribe();
        let now = self.now();
        let found = rx.wait_for(|(_, until)| until.is_some_and(|u| u > now)).await;
        found.ok().and_then(|v| v.1).unwrap_or(now)
    }
}

/// Marks the sleep `id` as over when its future is dropped (woken, or abandoned by a select).
struct Pending<'a> {
    asleep: &'a watch::Sender<(u64, Option<DateTime<Utc>>)>,
    id: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.asleep.send_if_modified(|(id, until)| {
            let mine = *id == self.id;
            if mine {
                *until = None;
            }
            mine
        });
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep<'_> {
        let mut rx = self.now.subscribe();
        let mut id = 0;
        self.asleep.send_modify(|(n, until)| {
            *n += 1;
            id = *n;
            *until = Some(at);
        });
        let pending = Pending {
            asleep: &self.asleep,
            id,
        };
        Box::pin(async move {
            let _pending = pending;
            let _ = rx.wait_for(|now| *now >= at).await;
        })
    }
}
