//! Flow control's store side (CONTRACT §13): what admission asks, what it answers, and the
//! texts both backends write (reasons, the result of an ended event).
//!
//! Admission runs in one transaction per claimed event (serialised per action: SQLite's
//! writer, PostgreSQL advisory locks), so limits hold across every process. A run holds a
//! row of `flow_slots` while its handler runs; an event that may not start yet is `waiting`
//! with a row of `flow_waits` saying what for, and keeps that row (its place in line) until
//! it starts or ends. Freeing a slot wakes the oldest waiter it could let start.

use std::time::Duration;

use serde_json::json;

use crate::domain::EventStatus;
use crate::domain::flow::{Flow, format_duration};

use super::ClaimRef;

/// How long a waiting event that nothing wakes sleeps before it is looked at again: a
/// safety net (a raised limit wakes nobody), not the way slots are handed over.
pub const WAIT_RECHECK: Duration = Duration::from_secs(60);

/// One action of a claimed event, with its flow and rendered key.
#[derive(Debug, Clone)]
pub struct FlowRun {
    /// The routed action.
    pub action: String,
    /// The rendered key (empty without a key template).
    pub key: String,
    /// The route's flow.
    pub flow: Flow,
}

/// Admission of a claimed event's actions that have a flow.
#[derive(Debug, Clone)]
pub struct FlowAsk {
    /// The claim (admission is refused when it was lost).
    pub claim: ClaimRef,
    /// The detected provider (stored on a waiting or ended event, for listings).
    pub provider: String,
    /// The actions with a flow, in routing order.
    pub runs: Vec<FlowRun>,
}

/// What admission decided (and already stored).
#[derive(Debug, Clone, PartialEq)]
pub enum FlowVerdict {
    /// Every run holds its slot: run them, then free the slots ([`super::Store::flow_release`]).
    Run {
        /// `deliver: "all"`: the row ids of the debounce window, oldest first, this event
        /// last (at most [`crate::domain::flow::MAX_DEBOUNCED`]); empty otherwise.
        debounced: Vec<i64>,
    },
    /// The event is `waiting` (its attempt given back), `reason` in `last_error`.
    Wait {
        /// What it waits for.
        reason: String,
    },
    /// The event ended `skipped` or `superseded`.
    Ended {
        /// `skipped` or `superseded`.
        status: EventStatus,
        /// The event that holds or took its place.
        by: i64,
    },
    /// The claim was lost (the lease expired, or another event superseded this one).
    Lost,
}

/// What a waiting run is blocked on; each has its own wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// The key's `per_key` slots, or an older event of the key waiting before it.
    Key,
    /// The action's `limit`.
    Limit,
    /// The pool's limit.
    Pool,
    /// The pool is paused (time).
    Paused,
    /// The key's rate window (time).
    Rate,
    /// The debounce window (time).
    Debounce,
}

impl Blocked {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Blocked::Key => "key",
            Blocked::Limit => "limit",
            Blocked::Pool => "pool",
            Blocked::Paused => "paused",
            Blocked::Rate => "rate",
            Blocked::Debounce => "debounce",
        }
    }

    /// Whether only time (not a freed slot) ends the wait.
    pub fn is_timed(self) -> bool {
        matches!(self, Blocked::Paused | Blocked::Rate | Blocked::Debounce)
    }
}

/// The result stored on an event that flow control ended: what ended it and which event
/// holds or took its place.
pub fn ended_result(status: EventStatus, action: &str, key: &str, by: i64, by_event_id: Option<&str>) -> String {
    json!({"flow": {
        "status": status.as_str(),
        "action": action,
        "key": key,
        "by": {"row_id": by, "event_id": by_event_id},
    }})
    .to_string()
}

/// `'key'` for reasons: empty keys are the action's one key.
pub fn shown_key(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" key '{key}'")
    }
}

/// The `last_error` of a waiting event.
pub fn wait_reason(blocked: Blocked, run: &FlowRun, detail: &str) -> String {
    let what = match blocked {
        Blocked::Key | Blocked::Limit | Blocked::Pool => "concurrency",
        Blocked::Paused => "paused",
        Blocked::Rate => "rate",
        Blocked::Debounce => "debounce",
    };
    format!("flow:{what}: action '{}'{}: {detail}", run.action, shown_key(&run.key))
}

/// The rate window as text, for reasons.
pub fn per_text(d: Duration) -> String {
    format_duration(d)
}

/// A live view of flow control, for the routing page and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowState {
    /// Running slots per action.
    pub running: Vec<(String, i64)>,
    /// Waiting events per action.
    pub waiting: Vec<(String, i64)>,
    /// Pools: name, limit, runs in it, paused until.
    pub pools: Vec<PoolState>,
}

impl FlowState {
    /// The state from its three queries' rows ([`sql::STATE_RUNNING`], [`sql::STATE_WAITING`],
    /// [`sql::STATE_POOLS`]).
    pub fn from_rows(
        running: Vec<(String, i64)>,
        waiting: Vec<(String, i64)>,
        pools: Vec<(String, i64, i64, Option<String>)>,
    ) -> FlowState {
        let pools = pools
            .into_iter()
            .map(|(name, limit, running, paused_until)| PoolState {
                name,
                limit,
                running,
                paused_until,
            })
            .collect();
        FlowState {
            running,
            waiting,
            pools,
        }
    }
}

/// One pool's live state.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolState {
    /// Its name.
    pub name: String,
    /// Its limit.
    pub limit: i64,
    /// Runs holding a slot in it.
    pub running: i64,
    /// Paused until (stored timestamp), if paused now or lately.
    pub paused_until: Option<String>,
}

mod admit;
pub mod tx;

pub use admit::{admit, release, wake_for};
pub mod sql;

/// The longest rate window a flow may set; rate starts older than it are pruned.
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(31 * 86_400);

/// The first pause of a pool without a `Retry-After`, and the longest.
const FIRST_PAUSE_MS: i64 = 5_000;
const LONGEST_PAUSE_MS: i64 = 300_000;

/// The next pause of a pool whose last pauses in a row lasted `pause_ms` (0: none): the
/// provider's `retry_after` when it gave one, else 5 s doubling up to 5 min. Returns the
/// pause length to store and how long to pause now.
pub fn next_pause(pause_ms: i64, retry_after: Option<Duration>) -> (i64, Duration) {
    let doubled = pause_ms.saturating_mul(2).clamp(FIRST_PAUSE_MS, LONGEST_PAUSE_MS);
    match retry_after {
        Some(d) => (pause_ms, d),
        None => (doubled, Duration::from_millis(doubled as u64)),
    }
}

/// The later of two stored timestamps.
pub fn later(a: Option<&str>, b: &str) -> String {
    match a {
        Some(a) if a > b => a.to_owned(),
        _ => b.to_owned(),
    }
}

/// A stored timestamp `d` after `ts`.
pub fn plus(ts: &str, d: Duration) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| t.to_utc())
        .unwrap_or_else(|_| chrono::Utc::now());
    crate::time::format(t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(3650)))
}

/// Rate starts before this are older than any window.
pub fn starts_kept_after(now: &str) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(now)
        .map(|t| t.to_utc())
        .unwrap_or_else(|_| chrono::Utc::now());
    crate::time::format(t - chrono::Duration::from_std(MAX_RATE_WINDOW).unwrap_or(chrono::Duration::days(31)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_five_seconds_to_five_minutes_unless_the_provider_says() {
        assert_eq!(next_pause(0, None), (5_000, Duration::from_secs(5)));
        assert_eq!(next_pause(5_000, None), (10_000, Duration::from_secs(10)));
        assert_eq!(next_pause(200_000, None), (300_000, Duration::from_secs(300)));
        assert_eq!(next_pause(300_000, None).1, Duration::from_secs(300));
        assert_eq!(next_pause(0, Some(Duration::from_secs(2))).1, Duration::from_secs(2));
        assert_eq!(later(Some("2026-01-02"), "2026-01-01"), "2026-01-02");
        assert_eq!(later(None, "2026-01-01"), "2026-01-01");
    }
}
