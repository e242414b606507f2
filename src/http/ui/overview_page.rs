//! The Overview: counts by status, the oldest due event's age, the last hour's throughput
//! chart and the most recent failures. It refreshes itself like the events table.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::UiState;
use super::chart;
use super::events_page::table;
use super::layout::page;
use super::session::Session;
use crate::domain::EventStatus;
use crate::error::ApiError;
use crate::store::EventFilter;

/// Minutes shown in the chart.
const CHART_MINUTES: u32 = 60;
/// Failures listed.
const RECENT_FAILURES: u32 = 10;

/// The Overview page.
pub async fn show(State(state): State<UiState>, Extension(session): Extension<Session>) -> Result<Response, ApiError> {
    let db = &state.app.db;
    let stats = db.stats().await?;
    let series = db.per_minute(chrono::Utc::now(), CHART_MINUTES).await?;
    let failures = EventFilter {
        status: Some(EventStatus::Error.as_str().to_string()),
        ..EventFilter::default()
    };
    let failed = db.list_page(failures, None, RECENT_FAILURES).await?.events;
    let errors_href = format!("/ui/events?status={}", EventStatus::Error.as_str());
    let content = html! {
        div.row {
            h1 { "Overview" }
            span.spacer {}
            span.live { "live" }
        }
        div id="overview-live" data-live="5000" {
            div.stats {
                @for s in EventStatus::ALL {
                    @let n = stats.by_status.get(s.as_str()).copied().unwrap_or(0);
                    // `zero`: a count of nothing is not coloured as an alarm.
                    div class={ "card " (s.as_str()) @if n == 0 { " zero" } } {
                        div.muted { a href={ "/ui/events?status=" (s.as_str()) } { (s.as_str()) } }
                        div.stat { (n) }
                    }
                }
                div.card {
                    div.muted { "oldest due" }
                    div.stat { (age(stats.oldest_due_age_seconds)) }
                }
            }
            div.card {
                h2 { "Throughput, last hour" }
                (chart::throughput("Events received, done and failed per minute, last hour", &series))
            }
            div.card {
                div.row {
                    h2 { "Recent failures" }
                    span.spacer {}
                    a href=(errors_href) { "all failures →" }
                }
                (table(&failed))
            }
        }
    };
    Ok(page("Overview", "/ui/overview", &session, content).into_response())
}

/// An age in seconds for a glance: `—` when nothing is due, else s, min or h.
fn age(seconds: Option<f64>) -> String {
    match seconds {
        None => "—".into(),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) if s < 7200.0 => format!("{:.0} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(None), "—");
        assert_eq!(age(Some(3.4)), "3 s");
        assert_eq!(age(Some(600.0)), "10 min");
        assert_eq!(age(Some(9000.0)), "2.5 h");
    }
}
