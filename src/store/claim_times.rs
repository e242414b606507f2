//! When this process claimed each event whose attempt has not ended yet, so that a finish
//! writes its attempt's duration from two instants it holds instead of parsing stored
//! times (both backends; docs/PERFORMANCE.md). A finish whose claim is not noted here (a
//! reclaim, another process's claim, one made before a restart) computes it from the
//! stored claim time instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use crate::store::{ClaimRef, ClaimedEvent};

/// This many claims noted and not ended means some ended elsewhere (another process
/// reclaimed them): the notes are dropped rather than kept growing, and those finishes read
/// the stored claim time. A worker holds at most `WORKER_CONCURRENCY` (≤ 10,000) claims
/// plus two claim batches ahead.
const MAX_CLAIM_TIMES: usize = 65_536;

/// Claim times by row id, each for one attempt.
#[derive(Default)]
pub(crate) struct ClaimTimes(HashMap<i64, Claimed>);

/// One noted claim.
pub(crate) struct Claimed {
    /// The attempt number the claim set.
    pub(crate) attempt: i64,
    /// The claim time as stored (the event's `processing_started_at`), one allocation
    /// shared by every event of the claim.
    pub(crate) text: Arc<str>,
    /// The claim time.
    pub(crate) at: DateTime<Utc>,
}

impl ClaimTimes {
    /// Notes that attempt `attempt` of event `id` was claimed at `text` (`at`).
    pub(crate) fn claimed(&mut self, id: i64, attempt: i64, text: &Arc<str>, at: DateTime<Utc>) {
        if self.0.len() >= MAX_CLAIM_TIMES {
            self.0.clear();
        }
        let text = text.clone();
        self.0.insert(id, Claimed { attempt, text, at });
    }

    /// When attempt `attempt` of event `id` was claimed, if noted.
    pub(crate) fn at(&self, id: i64, attempt: i64) -> Option<DateTime<Utc>> {
        self.0.get(&id).filter(|c| c.attempt == attempt).map(|c| c.at)
    }

    /// Takes event `id`'s note: the claim of attempt `attempt`, or none if the note is of
    /// another attempt (that note is dropped too).
    pub(crate) fn take(&mut self, id: i64, attempt: i64) -> Option<Claimed> {
        self.0.remove(&id).filter(|c| c.attempt == attempt)
    }

    /// Forgets event `id`'s claim of attempt `attempt` (a note of a later claim stays).
    pub(crate) fn ended(&mut self, id: i64, attempt: i64) {
        if self.0.get(&id).is_some_and(|c| c.attempt <= attempt) {
            self.0.remove(&id);
        }
    }

    /// Forgets event `id`'s claim: it ended without a finish here (released, held,
    /// reclaimed), or its finish lost the claim.
    pub(crate) fn forget(&mut self, id: i64) {
        self.0.remove(&id);
    }

    /// Forgets every claim (their transaction was rolled back).
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

/// When the attempts a finish ends were claimed, by event id and attempt (those noted).
pub(crate) type ClaimStarts = HashMap<(i64, i64), DateTime<Utc>>;

/// [`ClaimTimes`] shared by a store's tasks (on PostgreSQL, claims and finishes run at once).
#[derive(Default)]
pub(crate) struct SharedClaimTimes(Mutex<ClaimTimes>);

impl SharedClaimTimes {
    fn lock(&self) -> MutexGuard<'_, ClaimTimes> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `events` were claimed at `text` (`at`).
    pub(crate) fn claimed(&self, events: &[ClaimedEvent], text: &str, at: DateTime<Utc>) {
        let text: Arc<str> = Arc::from(text);
        let mut times = self.lock();
        for e in events {
            times.claimed(e.id, e.attempt_count, &text, at);
        }
    }

    /// When the attempts of `claims` were claimed, those noted.
    pub(crate) fn starts(&self, claims: impl Iterator<Item = ClaimRef>) -> ClaimStarts {
        let times = self.lock();
        claims
            .filter_map(|c| Some(((c.id, c.attempt), times.at(c.id, c.attempt)?)))
            .collect()
    }

    /// Forgets the notes of attempts that ended (or were given back).
    pub(crate) fn ended(&self, claims: impl Iterator<Item = ClaimRef>) {
        let mut times = self.lock();
        for c in claims {
            times.ended(c.id, c.attempt);
        }
    }
}

/// An attempt's duration in milliseconds, rounded to the nearest as PostgreSQL's
/// `round(extract(epoch FROM …) * 1000)` rounds it when it computes one itself.
pub(crate) fn duration_ms(claimed: DateTime<Utc>, ended: DateTime<Utc>) -> Option<i64> {
    (ended - claimed)
        .num_microseconds()
        .map(|us| (us as f64 / 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn notes_are_per_attempt() {
        let mut c = ClaimTimes::default();
        let t = at("2026-12-05T15:00:00.000100Z");
        c.claimed(7, 2, &Arc::from("2026-12-05T15:00:00.000100Z"), t);
        assert_eq!(c.at(7, 2), Some(t));
        assert_eq!(c.at(7, 1), None, "another attempt's claim is not this one");
        c.ended(7, 1);
        assert_eq!(c.at(7, 2), Some(t), "an earlier attempt's end keeps the later claim");
        c.ended(7, 2);
        assert_eq!(c.at(7, 2), None);
        c.claimed(8, 1, &Arc::from("x"), t);
        assert!(c.take(8, 2).is_none(), "a note of another attempt is not taken");
        assert_eq!(c.at(8, 1), None, "but dropped");
    }

    #[test]
    fn durations_round_to_the_nearest_millisecond() {
        let t0 = at("2026-12-05T15:00:00.000000Z");
        assert_eq!(duration_ms(t0, at("2026-12-05T15:00:00.000499Z")), Some(0));
        assert_eq!(duration_ms(t0, at("2026-12-05T15:00:00.000500Z")), Some(1));
        assert_eq!(duration_ms(t0, at("2026-12-05T15:00:01.250400Z")), Some(1250));
        assert_eq!(duration_ms(at("2026-12-05T15:00:00.002000Z"), t0), Some(-2));
    }
}
