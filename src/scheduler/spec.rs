//! A schedule compiled for evaluation: its cron expression read as wall-clock times in its
//! zone, mapped to instants by the contract's DST rules (CONTRACT §9).
//!
//! croner matches the expression against local (naive) wall-clock times; this module
//! decides which instant each match is. A repeated wall-clock time (autumn) fires once, at
//! its first occurrence; a time skipped by a spring jump fires once, at the jump. croner's
//! own DST handling differs (it fires interval jobs in both halves of a repeated hour and
//! lets some skipped times vanish), so it is not used: only its naive matching is.

use chrono::{DateTime, LocalResult, NaiveDateTime, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::store::Schedule;

/// Longest job name (it is part of every tick's event id).
pub const MAX_JOB_LEN: usize = 128;

/// Consecutive wall-clock matches that may map to no new instant (the second half of a
/// repeated hour of an every-second schedule is 3,600) before a search gives up.
const MAX_SKIPPED_MATCHES: usize = 10_000;

/// A schedule ready to compute its ticks.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The stored definition.
    pub schedule: Schedule,
    cron: Cron,
    tz: Tz,
}

impl Compiled {
    /// Validates the definition (job name, expression, zone); the error says which.
    pub fn new(schedule: Schedule) -> Result<Compiled, String> {
        validate_job(&schedule.job)?;
        let cron = parse_cron(&schedule.cron)?;
        let tz = parse_zone(&schedule.timezone)?;
        Ok(Compiled { schedule, cron, tz })
    }

    /// The zone the expression is read in.
    pub fn zone(&self) -> Tz {
        self.tz
    }

    /// The first tick strictly after `after`, or None when the expression never matches again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cursor = after.trunc_subsecs(0).with_timezone(&self.tz).naive_local();
        for _ in 0..MAX_SKIPPED_MATCHES {
            let wall = self.cron.find_next_occurrence(&cursor, false).ok()?;
            let tick = self.instant(wall);
            if tick > after {
                return Some(tick);
            }
            // The match maps to an instant already past: a wall time in the second half of
            // a repeated hour, or a later skipped time sharing an earlier one's jump.
            cursor = wall;
        }
        None
    }

    /// The latest tick at or before `at`, or None when there is none.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cursor = at.trunc_subsecs(0).with_timezone(&self.tz).naive_local();
        let mut inclusive = true;
        for _ in 0..MAX_SKIPPED_MATCHES {
            let wall = self.cron.find_previous_occurrence(&cursor, inclusive).ok()?;
            let tick = self.instant(wall);
            if tick <= at {
                return Some(tick);
            }
            cursor = wall;
            inclusive = false;
        }
        None
    }

    /// The instant a matching wall-clock time fires at.
    fn instant(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            // A repeated wall time fires once, at its first occurrence.
            LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            // A skipped wall time fires at the jump.
            LocalResult::None => self.jump_after(wall),
        }
    }

    /// The first instant whose wall-clock time is past `wall` (which a jump skipped).
    fn jump_after(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        // Offsets lie within -12 h..+14 h, so the jump is within this window; binary search
        // on whole seconds for the first instant whose local time exceeds `wall`.
        let base = wall.and_utc().timestamp();
        let (mut lo, mut hi) = (base - 15 * 3600, base + 13 * 3600);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let local = self.local_of(mid);
            if local.is_some_and(|l| l > wall) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        DateTime::from_timestamp(hi, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn local_of(&self, ts: i64) -> Option<NaiveDateTime> {
        DateTime::from_timestamp(ts, 0).map(|t| t.with_timezone(&self.tz).naive_local())
    }
}

/// Parses a cron expression: 5 fields, 6 with seconds first, or an `@hourly`-style alias.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    let expr = expr.trim();
    let fields = expr.split_whitespace().count();
    let alias = expr.starts_with('@');
    if !alias && !(5..=6).contains(&fields) {
        return Err(format!(
            "invalid cron expression \"{expr}\": expected 5 fields (minute hour day month weekday) \
             or 6 with seconds first, got {fields}"
        ));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    let cron = parser
        .parse(expr)
        .map_err(|e| format!("invalid cron expression \"{expr}\": {e}"))?;
    // An expression such as "0 0 30 2 *" parses but never fires.
    let probe = NaiveDateTime::default();
    if cron.find_next_occurrence(&probe, false).is_err() {
        return Err(format!("cron expression \"{expr}\" never matches a real date"));
    }
    Ok(cron)
}

/// Parses an IANA time zone name (`Europe/Paris`, `UTC`).
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| format!("unknown time zone \"{name}\" (expected an IANA name such as Europe/Paris or UTC)"))
}

/// A job name: 1 to 128 of `A-Z a-z 0-9 . _ -` (it is part of the event id `cron:<job>:<tick>`).
pub fn validate_job(job: &str) -> Result<(), String> {
    let ok_chars = job
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if job.is_empty() || job.len() > MAX_JOB_LEN || !ok_chars {
        return Err(format!(
            "invalid job name \"{job}\": use 1 to {MAX_JOB_LEN} letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Missed;

    fn compiled(cron: &str, tz: &str) -> Compiled {
        Compiled::new(Schedule {
            job: "j".into(),
            cron: cron.into(),
            timezone: tz.into(),
            payload_json: "{}".into(),
            enabled: true,
            missed: Missed::Latest,
        })
        .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Ticks in (from, to], each shown in the schedule's zone.
    fn ticks(c: &Compiled, from: &str, to: &str) -> Vec<String> {
        let (mut t, end) = (utc(from), utc(to));
        let mut out = Vec::new();
        while let Some(next) = c.next_after(t).filter(|n| *n <= end) {
            out.push(next.with_timezone(&c.zone()).to_rfc3339());
            t = next;
        }
        out
    }

    #[test]
    fn a_daily_time_skipped_in_spring_fires_once_at_the_jump() {
        // Europe/Paris, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        let c = compiled("0 2 * * *", "Europe/Paris");
        assert_eq!(
            ticks(&c, "2026-03-27T12:00:00Z", "2026-03-31T12:00:00Z"),
            [
                "2026-03-28T02:00:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:00:00+02:00",
                "2026-03-31T02:00:00+02:00"
            ]
        );
        // Several skipped times share the jump: one tick.
        let c = compiled("0,30 2 * * *", "Europe/Paris");
        assert_eq!(
            ticks(&c, "2026-03-28T12:00:00Z", "2026-03-29T12:00:00Z"),
            ["2026-03-29T03:00:00+02:00"]
        );
    }

    #[test]
    fn a_repeated_hour_fires_once() {
        // Europe/Paris, 2026-10-25: 03:00 CEST falls back to 02:00 CET.
        let c = compiled("0 2 * * *", "Europe/Paris");
        assert_eq!(
            ticks(&c, "2026-10-23T12:00:00Z", "2026-10-26T12:00:00Z"),
            [
                "2026-10-24T02:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-26T02:00:00+01:00"
            ]
        );
        // An interval schedule: each wall-clock quarter hour once, none in the second pass.
        let c = compiled("*/30 * * * *", "Europe/Paris");
        assert_eq!(
            ticks(&c, "2026-10-24T23:15:00Z", "2026-10-25T02:15:00Z"),
            [
                "2026-10-25T01:30:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
        // Asked from inside the second pass, the next tick is after it.
        assert_eq!(
            c.next_after(utc("2026-10-25T01:10:00Z")).unwrap().to_rfc3339(),
            "2026-10-25T02:00:00+00:00"
        );
    }

    #[test]
    fn quarter_hours_in_a_half_hour_zone_are_local() {
        let c = compiled("*/15 * * * *", "Asia/Kolkata");
        assert_eq!(
            ticks(&c, "2026-01-01T00:00:00Z", "2026-01-01T00:50:00Z"),
            [
                "2026-01-01T05:45:00+05:30",
                "2026-01-01T06:00:00+05:30",
                "2026-01-01T06:15:00+05:30"
            ]
        );
        // Whole local hours are half past in UTC.
        let c = compiled("0 * * * *", "Asia/Kolkata");
        assert_eq!(
            c.next_after(utc("2026-01-01T00:16:00Z")).unwrap(),
            utc("2026-01-01T00:30:00Z")
        );
    }

    #[test]
    fn six_fields_have_seconds_and_aliases_work() {
        let c = compiled("*/20 * * * * *", "UTC");
        assert_eq!(
            ticks(&c, "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"),
            [
                "2026-01-01T00:00:20+00:00",
                "2026-01-01T00:00:40+00:00",
                "2026-01-01T00:01:00+00:00"
            ]
        );
        let c = compiled("@hourly", "UTC");
        assert_eq!(
            c.next_after(utc("2026-01-01T00:00:00.5Z")).unwrap(),
            utc("2026-01-01T01:00:00Z")
        );
        assert_eq!(
            c.latest_at_or_before(utc("2026-01-01T05:59:59Z")).unwrap(),
            utc("2026-01-01T05:00:00Z")
        );
        assert_eq!(
            c.latest_at_or_before(utc("2026-01-01T05:00:00Z")).unwrap(),
            utc("2026-01-01T05:00:00Z")
        );
    }

    #[test]
    fn latest_before_honours_the_dst_rules() {
        let c = compiled("0 2 * * *", "Europe/Paris");
        assert_eq!(
            c.latest_at_or_before(utc("2026-03-29T05:00:00Z")).unwrap().to_rfc3339(),
            "2026-03-29T01:00:00+00:00"
        );
        // During the second pass of the repeated hour, the day's tick was the first pass.
        assert_eq!(
            c.latest_at_or_before(utc("2026-10-25T01:30:00Z")).unwrap().to_rfc3339(),
            "2026-10-25T00:00:00+00:00"
        );
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        assert!(parse_cron("61 * * * *").unwrap_err().contains("\"61 * * * *\""));
        assert!(parse_cron("* * * *").unwrap_err().contains("5 fields"));
        assert!(parse_cron("0 0 0 * * * 2030").unwrap_err().contains("got 7"));
        assert!(parse_cron("@often").is_err());
        assert!(parse_cron("0 0 30 2 *").unwrap_err().contains("never"));
        assert!(parse_zone("Mars/Olympus").unwrap_err().contains("Mars/Olympus"));
        assert!(parse_zone("Europe/Paris").is_ok());
        assert!(validate_job("daily-digest.v2_x").is_ok());
        for bad in ["", "a b", "a:b", &"x".repeat(129)] {
            assert!(validate_job(bad).is_err(), "{bad}");
        }
    }
}
