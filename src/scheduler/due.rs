//! Which ticks to enqueue when the scheduler looks: on time, late, or missed (CONTRACT §9).

use chrono::{DateTime, Duration, Utc};

use super::spec::Compiled;
use crate::store::Missed;

/// The ticks from `cursor` (the first not yet handled) up to `now` to enqueue.
///
/// Ticks at or after `horizon` are late, not missed: all of them are enqueued (a process
/// that stalled for a few seconds catches up). Older ones were missed; when no tick is
/// late, `missed: latest` enqueues the newest missed one and `skip` none. The caller puts
/// the horizon a little before now, and after downtime no earlier than start-up, so every
/// tick that fell while no process ran counts as missed.
pub fn due_ticks(
    c: &Compiled,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
    horizon: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    if cursor > now {
        return Vec::new();
    }
    let mut next = if cursor >= horizon {
        Some(cursor)
    } else {
        // The first tick at or after the horizon.
        c.next_after(horizon - Duration::nanoseconds(1))
    };
    let mut due = Vec::new();
    while let Some(tick) = next.filter(|t| *t <= now) {
        due.push(tick);
        next = c.next_after(tick);
    }
    if due.is_empty()
        && c.schedule.missed == Missed::Latest
        && let Some(latest) = c.latest_at_or_before(now).filter(|t| *t >= cursor)
    {
        due.push(latest);
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Schedule;

    fn minutely(missed: Missed) -> Compiled {
        Compiled::new(Schedule {
            job: "m".into(),
            cron: "* * * * *".into(),
            timezone: "UTC".into(),
            payload_json: "{}".into(),
            enabled: true,
            missed,
        })
        .unwrap()
    }

    fn at(hms: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-05-04T{hms}Z"))
            .unwrap()
            .to_utc()
    }

    #[test]
    fn after_downtime_latest_takes_only_the_newest_and_skip_none() {
        // Last tick 10:00:00; back at 10:05:10 (the horizon is start-up: all were missed).
        let (cursor, now) = (at("10:01:00"), at("10:05:10"));
        let latest = due_ticks(&minutely(Missed::Latest), cursor, now, now);
        assert_eq!(latest, [at("10:05:00")]);
        assert!(due_ticks(&minutely(Missed::Skip), cursor, now, now).is_empty());
    }

    #[test]
    fn late_ticks_of_a_running_process_all_fire() {
        let due = due_ticks(&minutely(Missed::Skip), at("10:01:00"), at("10:03:30"), at("10:00:30"));
        assert_eq!(due, [at("10:01:00"), at("10:02:00"), at("10:03:00")]);
        // Too late: only the ones after the horizon.
        let due = due_ticks(&minutely(Missed::Skip), at("10:01:00"), at("10:03:30"), at("10:02:30"));
        assert_eq!(due, [at("10:03:00")]);
        // Missed, none late: latest takes the newest, skip none.
        let due = due_ticks(
            &minutely(Missed::Latest),
            at("10:01:00"),
            at("10:03:30"),
            at("10:03:10"),
        );
        assert_eq!(due, [at("10:03:00")]);
        assert!(due_ticks(&minutely(Missed::Skip), at("10:01:00"), at("10:03:30"), at("10:03:10")).is_empty());
        // Nothing due yet.
        assert!(
            due_ticks(
                &minutely(Missed::Latest),
                at("10:04:00"),
                at("10:03:30"),
                at("10:02:30")
            )
            .is_empty()
        );
    }
}
