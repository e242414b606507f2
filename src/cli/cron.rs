//! `switchyard cron list`: each schedule and its next three run times (CONTRACT §9).

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::scheduler::spec::Compiled;
use crate::settings::Settings;
use crate::store::StoredSchedule;

/// How many upcoming runs a line shows.
const NEXT_RUNS: usize = 3;

/// Prints one line per schedule: job, expression, zone, state and the next runs.
pub async fn list(s: &Settings) -> anyhow::Result<ExitCode> {
    let db = crate::store::open_existing(&s.store_config())
        .await
        .context("opening the database")?;
    let schedules = db.schedules().await?;
    if schedules.is_empty() {
        println!("no schedules");
    }
    let now = Utc::now();
    for row in schedules {
        println!("{}", line(&row, now));
    }
    Ok(ExitCode::SUCCESS)
}

/// `job  cron  zone  enabled|disabled  missed=…  next: t1 t2 t3` (times in the schedule's zone).
pub fn line(row: &StoredSchedule, now: DateTime<Utc>) -> String {
    let s = &row.schedule;
    let state = if s.enabled { "enabled" } else { "disabled" };
    let head = format!(
        "{}\t{}\t{}\t{state}\tmissed={}",
        s.job,
        s.cron,
        s.timezone,
        s.missed.as_str()
    );
    let compiled = match Compiled::new(s.clone()) {
        Ok(c) => c,
        Err(e) => return format!("{head}\tinvalid: {e}"),
    };
    let mut runs = Vec::with_capacity(NEXT_RUNS);
    let mut t = now;
    while runs.len() < NEXT_RUNS
        && let Some(next) = compiled.next_after(t)
    {
        runs.push(
            next.with_timezone(&compiled.zone())
                .to_rfc3339_opts(SecondsFormat::Secs, false),
        );
        t = next;
    }
    format!("{head}\tnext: {}", runs.join(" "))
}
