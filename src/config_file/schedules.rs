//! The config file's `"schedules"` (CONTRACT §9): each entry validated like a mapping,
//! upserted by `job`; a bad expression, zone, job name or a repeated job refuses the file.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{enabled, optional_string, string};
use crate::scheduler::spec;
use crate::store::{Missed, Schedule};

/// Largest schedule `payload` (it is copied into every tick's event).
const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Validates the `"schedules"` list; the error names the entry.
pub(super) fn parse(entries: &[Value]) -> Result<Vec<Schedule>, String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut schedules = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let s = schedule(entry).map_err(|e| format!("schedules[{i}]: {e}"))?;
        if let Some(first) = seen.insert(s.job.clone(), i) {
            return Err(format!(
                "schedules[{i}]: duplicate job '{}' (also schedules[{first}])",
                s.job
            ));
        }
        schedules.push(s);
    }
    Ok(schedules)
}

fn schedule(entry: &Value) -> Result<Schedule, String> {
    let obj = entry.as_object().ok_or("must be an object")?;
    let job = string(obj, "job")?;
    let wrap = |e: String| format!("(job '{job}') {e}");
    spec::validate_job(&job).map_err(wrap)?;
    super::keys::check(obj, super::keys::SCHEDULE).map_err(wrap)?;
    let cron = string(obj, "cron").map_err(wrap)?;
    spec::parse_cron(&cron).map_err(wrap)?;
    let timezone = optional_string(obj, "timezone")
        .map_err(wrap)?
        .unwrap_or_else(|| "UTC".into());
    spec::parse_zone(&timezone).map_err(wrap)?;
    let missed = match optional_string(obj, "missed").map_err(wrap)? {
        None => Missed::default(),
        Some(m) => m.parse::<Missed>().map_err(|e| wrap(format!("'missed': {e}")))?,
    };
    Ok(Schedule {
        payload_json: payload(obj).map_err(wrap)?,
        enabled: enabled(obj).map_err(wrap)?,
        cron,
        timezone,
        missed,
        job,
    })
}

fn payload(obj: &Map<String, Value>) -> Result<String, String> {
    let text = match obj.get("payload") {
        None | Some(Value::Null) => return Ok("{}".into()),
        Some(p @ Value::Object(_)) => p.to_string(),
        Some(_) => return Err("'payload' must be a JSON object".into()),
    };
    if text.len() > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "'payload' is {} bytes; at most {MAX_PAYLOAD_BYTES}",
            text.len()
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::parse as parse_file;

    #[test]
    fn the_contract_example_parses_with_defaults() {
        let c = parse_file(
            r#"{"schedules": [
              {"job": "daily-digest", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris",
               "payload": {"kind": "digest"}, "enabled": true, "missed": "skip"},
              {"job": "tick", "cron": "*/5 * * * * *"}]}"#,
        )
        .unwrap();
        let [a, b] = &c.schedules[..] else {
            panic!("two schedules")
        };
        assert_eq!(
            (a.job.as_str(), a.timezone.as_str(), a.missed.as_str()),
            ("daily-digest", "Europe/Paris", "skip")
        );
        assert_eq!(a.payload_json, r#"{"kind":"digest"}"#);
        assert_eq!(
            (b.timezone.as_str(), b.missed.as_str(), b.enabled),
            ("UTC", "latest", true)
        );
        assert_eq!(b.payload_json, "{}");
    }

    #[test]
    fn bad_entries_refuse_the_file_naming_the_entry() {
        let cases = [
            (r#"{"job":"a","cron":"0 25 * * *"}"#, "\"0 25 * * *\""),
            (
                r#"{"job":"a","cron":"@daily","timezone":"Europe/Pariss"}"#,
                "Europe/Pariss",
            ),
            (r#"{"job":"a b","cron":"@daily"}"#, "invalid job name"),
            (r#"{"job":"a","cron":"@daily","missed":"all"}"#, "missed"),
            (r#"{"job":"a","cron":"@daily","payload":[1]}"#, "payload"),
            (r#"{"job":"a","cron":"@daily","timezon":"UTC"}"#, "timezon"),
        ];
        for (entry, needle) in cases {
            let text = format!(r#"{{"schedules":[{{"job":"ok","cron":"@hourly"}}, {entry}]}}"#);
            let e = parse_file(&text).unwrap_err();
            assert!(e.contains("schedules[1]") && e.contains(needle), "{entry}: {e}");
        }
        let e = parse_file(r#"{"schedules":[{"job":"a","cron":"@daily"},{"job":"a","cron":"@hourly"}]}"#).unwrap_err();
        assert!(e.contains("schedules[1]") && e.contains("duplicate job 'a'"), "{e}");
    }
}
