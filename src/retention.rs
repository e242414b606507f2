//! Retention: finished events older than their status's limit are deleted with their
//! action runs, in small batches with a pause between them, so a purge of millions of
//! rows never holds the database (SQLite's single writer) for more than one short batch.

use std::time::Duration;

use tokio::sync::watch;

use crate::domain::EventStatus;
use crate::store::{Db, StoreError};

/// Events deleted per batch (one short transaction each): a blocked ingest commit waits for
/// at most one batch.
pub const BATCH: usize = 100;

/// Shortest pause between two batches, so ingest's commits run in between.
const PAUSE: Duration = Duration::from_millis(10);

/// How often `serve` applies the retention settings.
const INTERVAL: Duration = Duration::from_secs(600);

/// Deletes events in `status` that finished before `before` (stored timestamp text);
/// returns how many.
pub async fn purge(db: &Db, status: EventStatus, before: &str) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let started = std::time::Instant::now();
        let n = db.purge_batch(status, before, BATCH).await?;
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
        // At least as long as the batch took: on a slow or busy machine the purge still
        // holds the database at most half the time, never back to back.
        tokio::time::sleep(PAUSE.max(started.elapsed())).await;
    }
}

/// The stored timestamp text of `age` ago.
pub fn cutoff(age: Duration) -> String {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    crate::time::format(
        chrono::Utc::now()
            .checked_sub_signed(age)
            .unwrap_or(chrono::DateTime::UNIX_EPOCH),
    )
}

/// Parses an age such as `7d`, `12h`, `30m` or `90s`.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected an age such as 7d, 12h, 30m or 90s, got '{text}'"))?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(format!("the unit of '{text}' must be d, h, m or s")),
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{text}' is too long an age"))
}

/// Each finished status with the days its events are kept: events flow control ended
/// (CONTRACT §13) are kept like `done` ones, since nothing failed.
fn limits(done_days: u32, error_days: u32) -> [(EventStatus, u32); 5] {
    [
        (EventStatus::Done, done_days),
        (EventStatus::Skipped, done_days),
        (EventStatus::Superseded, done_days),
        (EventStatus::Error, error_days),
        (EventStatus::Cancelled, error_days),
    ]
}

/// Purges by the retention settings (days; 0 keeps forever) every `INTERVAL` until `stop`.
pub async fn run(db: Db, done_days: u32, error_days: u32, mut stop: watch::Receiver<bool>) {
    loop {
        for (status, days) in limits(done_days, error_days) {
            if days == 0 {
                continue;
            }
            let before = cutoff(Duration::from_secs(u64::from(days) * 86_400));
            match purge(&db, status, &before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    status = status.as_str(),
                    deleted = n,
                    days,
                    "retention purged old events"
                ),
                Err(e) => {
                    tracing::warn!(status = status.as_str(), error = %e, "retention purge failed; trying again later")
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finished_status_has_a_retention_limit() {
        let l = limits(30, 90);
        for status in EventStatus::FINISHED {
            assert!(l.iter().any(|(s, _)| s == status), "{status:?} is never purged");
        }
        assert!(l.iter().all(|(s, _)| EventStatus::FINISHED.contains(s)));
        assert!(l.contains(&(EventStatus::Superseded, 30)) && l.contains(&(EventStatus::Cancelled, 90)));
    }

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age(" 12h "), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        assert!(parse_age("7").unwrap_err().contains("unit"));
        assert!(parse_age("d").is_err());
        assert!(parse_age("7w").is_err());
        assert!(parse_age("99999999999999999d").is_err());
    }
}
