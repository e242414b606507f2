//! Timestamps as stored: RFC 3339 UTC text with a `+00:00` offset.
//!
//! The seed wrote seconds precision (`2024-01-01T00:00:00+00:00`); we write microseconds.
//! Both forms compare correctly as strings within one table ('+' sorts before '.'), which
//! is what lets the due-row index work on text columns.

use chrono::{DateTime, SecondsFormat, Utc};
use std::time::Duration;

use crate::domain::Timestamp;

/// The current time as stored text.
pub fn now() -> String {
    format(Utc::now())
}

/// A time `d` from now, as stored text.
pub fn after(d: Duration) -> String {
    format(Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
}

/// A time `d` from now.
pub fn timestamp_after(d: Duration) -> Timestamp {
    Timestamp::from_stored(after(d))
}

/// Formats a time as stored text.
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// Formats with seconds precision (cron event ids and `scheduled_at`).
pub fn format_seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Normalises a stored timestamp (seed or ours) to RFC 3339 UTC; unparsable text is kept.
pub fn normalize(s: &str) -> String {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => format(t.with_timezone(&Utc)),
        Err(_) => match chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
            Ok(t) => format(t.and_utc()),
            Err(_) => s.to_string(),
        },
    }
}

/// Seconds from a stored timestamp until now (0 for a future one); `None` if unparsable.
pub fn age_seconds(stored: &str) -> Option<f64> {
    let t = DateTime::parse_from_rfc3339(&normalize(stored)).ok()?;
    let age = Utc::now().signed_duration_since(t.with_timezone(&Utc));
    Some((age.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_and_ours_sort_as_text() {
        let seed = "2024-01-01T00:00:00+00:00";
        let ours = "2024-01-01T00:00:00.000001+00:00";
        assert!(seed < ours);
        assert!(ours < "2024-01-01T00:00:01+00:00");
        assert_eq!(normalize(seed), "2024-01-01T00:00:00.000000+00:00");
        assert_eq!(normalize("2024-01-01 00:00:00"), "2024-01-01T00:00:00.000000+00:00");
        assert_eq!(normalize("garbage"), "garbage");
        assert!(now().ends_with("+00:00"));
    }
}
