//! The schedules page: each schedule with its next runs (in its zone) and its last tick.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use maud::html;

use super::UiState;
use super::layout::{page, short_time};
use super::session::Session;
use crate::error::ApiError;
use crate::scheduler::spec::Compiled;

/// How many upcoming runs are shown per schedule.
const NEXT_RUNS: usize = 3;

/// Lists the schedules.
pub async fn show(State(state): State<UiState>, Extension(session): Extension<Session>) -> Result<Response, ApiError> {
    let mut rows = state.app.db.schedules().await?;
    rows.sort_by(|a, b| a.schedule.job.cmp(&b.schedule.job));
    let now = chrono::Utc::now();
    let content = html! {
        h1 { "Schedules" }
        div.card {
            table {
                thead { tr { th { "Job" } th { "Cron" } th { "Zone" } th { "Enabled" } th { "Missed" } th { "Next runs" } th { "Last tick (UTC)" } } }
                tbody {
                    @for row in &rows {
                        @let s = &row.schedule;
                        tr {
                            td.mono { (s.job) } td.mono { (s.cron) } td { (s.timezone) }
                            td { (if s.enabled { "yes" } else { "no" }) } td { (s.missed.as_str()) }
                            td.mono {
                                @match next_runs(s, now) {
                                    Err(e) => span.nomatch { "invalid: " (e) },
                                    Ok(runs) => @for r in runs { div { (r) } },
                                }
                            }
                            td.mono { (short_time(row.last_scheduled_at.as_deref())) }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="7" .muted { "No schedules: add them to the config file's \"schedules\"." } } }
                }
            }
        }
    };
    Ok(page("Schedules", "/ui/schedules", &session, content).into_response())
}

/// The next runs after `now`, in the schedule's zone (RFC 3339 with offset).
fn next_runs(s: &crate::domain::Schedule, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<String>, String> {
    let c = Compiled::new(s.clone())?;
    let mut runs = Vec::with_capacity(NEXT_RUNS);
    let mut t = now;
    while runs.len() < NEXT_RUNS
        && let Some(next) = c.next_after(t)
    {
        runs.push(
            next.with_timezone(&c.zone())
                .to_rfc3339_opts(SecondsFormat::Secs, false),
        );
        t = next;
    }
    Ok(runs)
}
