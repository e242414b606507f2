//! Cron events: the event id and payload of a tick (CONTRACT §2, "Cron events").

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;

use crate::store::NewEvent;
use crate::time::format_seconds;

/// The event for job `job` scheduled at `at` (truncated to the second), id `cron:<job>:<at>`.
pub fn event_for(job: &str, at: DateTime<Utc>) -> NewEvent {
    let scheduled_at = format_seconds(at.trunc_subsecs(0));
    let payload = json!({"job": job, "source_hint": "cron", "scheduled_at": scheduled_at});
    NewEvent {
        source: crate::domain::Source::Cron,
        event_id: format!("cron:{job}:{scheduled_at}"),
        payload_json: payload.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn same_second_same_id() {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::milliseconds(700);
        let e = event_for("daily", t);
        assert_eq!(e.event_id, "cron:daily:2026-01-02T03:04:05+00:00");
        let p: serde_json::Value = serde_json::from_str(&e.payload_json).unwrap();
        assert_eq!(
            p,
            json!({"job":"daily","source_hint":"cron","scheduled_at":"2026-01-02T03:04:05+00:00"})
        );
    }
}
