//! Per-minute throughput for the dashboard's chart: events received and finished in each
//! minute of a recent window. Each backend runs the same two grouped counts in its own SQL
//! (bounded to the window by the `events_received` and `events_finished` indexes); the
//! buckets are filled here, so a minute without events is a zero rather than a gap.

use std::collections::HashMap;

use chrono::{DateTime, Duration, DurationRound, Utc};

/// One minute of the throughput series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteCounts {
    /// The minute's start (stored timestamp text, seconds precision).
    pub minute: String,
    /// Events received in that minute.
    pub received: i64,
    /// Events that finished `done` in that minute.
    pub done: i64,
    /// Events that finished `error` in that minute.
    pub failed: i64,
}

/// The `minutes` whole minutes ending with the one containing `now`: `(from, to)` as stored
/// text, `from` inclusive and `to` exclusive, plus each minute's key (`YYYY-MM-DDTHH:MM`).
pub(crate) struct Window {
    pub from: String,
    pub to: String,
    starts: Vec<DateTime<Utc>>,
}

impl Window {
    /// The window of `minutes` minutes (at least one) up to and including `now`'s minute.
    pub(crate) fn new(now: DateTime<Utc>, minutes: u32) -> Window {
        let end = now.duration_trunc(Duration::minutes(1)).unwrap_or(now) + Duration::minutes(1);
        let n = i64::from(minutes.max(1));
        let starts = (0..n).rev().map(|i| end - Duration::minutes(i + 1)).collect();
        Window {
            from: crate::time::format(end - Duration::minutes(n)),
            to: crate::time::format(end),
            starts,
        }
    }

    /// The dense series: one entry per minute, oldest first, from grouped counts keyed by
    /// the first 16 characters of a stored timestamp.
    pub(crate) fn fill(&self, received: &[(String, i64)], finished: &[(String, String, i64)]) -> Vec<MinuteCounts> {
        let mut by_key: HashMap<String, MinuteCounts> = HashMap::new();
        for (key, n) in received {
            by_key.entry(key.clone()).or_default().received += n;
        }
        for (status, key, n) in finished {
            let slot = by_key.entry(key.clone()).or_default();
            match status.parse::<crate::domain::EventStatus>() {
                Ok(crate::domain::EventStatus::Done) => slot.done += n,
                Ok(crate::domain::EventStatus::Error) => slot.failed += n,
                _ => {}
            }
        }
        self.starts
            .iter()
            .map(|start| {
                let key = start.format("%Y-%m-%dT%H:%M").to_string();
                MinuteCounts {
                    minute: crate::time::format_seconds(*start),
                    ..by_key.remove(&key).unwrap_or_default()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn window_ends_with_the_current_minute() {
        let w = Window::new(at("2026-01-02T03:04:05.5Z"), 3);
        assert_eq!(w.from, "2026-01-02T03:02:00.000000+00:00");
        assert_eq!(w.to, "2026-01-02T03:05:00.000000+00:00");
        assert_eq!(Window::new(at("2026-01-02T03:04:05Z"), 0).starts.len(), 1);
    }

    #[test]
    fn fill_buckets_by_minute_and_zeroes_empty_ones() {
        let w = Window::new(at("2026-01-02T03:04:05Z"), 3);
        let series = w.fill(
            &[("2026-01-02T03:02".into(), 4), ("2026-01-02T03:04".into(), 1)],
            &[
                ("done".into(), "2026-01-02T03:04".into(), 2),
                ("error".into(), "2026-01-02T03:04".into(), 1),
            ],
        );
        let got: Vec<_> = series
            .iter()
            .map(|m| (m.minute.as_str(), m.received, m.done, m.failed))
            .collect();
        assert_eq!(
            got,
            [
                ("2026-01-02T03:02:00+00:00", 4, 0, 0),
                ("2026-01-02T03:03:00+00:00", 0, 0, 0),
                ("2026-01-02T03:04:00+00:00", 1, 2, 1),
            ]
        );
    }
}
