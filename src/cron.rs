//! Cron events: the event id and payload of a tick (CONTRACT §2, "Cron events").

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value, json};

use crate::domain::Source;
use crate::store::NewEvent;
use crate::time::format_seconds;

/// The event for job `job` scheduled at `at` (truncated to the second), id `cron:<job>:<at>`.
pub fn event_for(job: &str, at: DateTime<Utc>) -> NewEvent {
    scheduled_event(job, at, &Map::new())
}

/// The event of a schedule's tick: [`event_for`]'s payload plus the schedule's `extra`
/// keys (`job`, `source_hint` and `scheduled_at` keep their meaning whatever `extra` holds).
pub fn scheduled_event(job: &str, at: DateTime<Utc>, extra: &Map<String, Value>) -> NewEvent {
    let scheduled_at = format_seconds(at.trunc_subsecs(0));
    let mut payload = extra.clone();
    payload.insert("job".into(), json!(job));
    payload.insert("source_hint".into(), json!(Source::Cron.as_str()));
    payload.insert("scheduled_at".into(), json!(scheduled_at));
    let payload = Value::Object(payload);
    NewEvent {
        source: Source::Cron,
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

    #[test]
    fn a_schedule_payload_is_added_without_overriding_the_tick() {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let extra = json!({"report": "daily", "job": "spoofed"});
        let e = scheduled_event("digest", t, extra.as_object().unwrap());
        let p: serde_json::Value = serde_json::from_str(&e.payload_json).unwrap();
        assert_eq!(
            p,
            json!({"job":"digest","source_hint":"cron","scheduled_at":"2026-01-02T03:04:05+00:00","report":"daily"})
        );
        assert_eq!(e.event_id, "cron:digest:2026-01-02T03:04:05+00:00");
    }
}
