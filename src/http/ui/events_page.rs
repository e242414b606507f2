//! The events table: filters, paging and live refresh of the first page.

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::UiState;
use super::auth::Session;
use super::layout::{page, short_time, status_badge};
use crate::domain::EventStatus;
use crate::error::ApiError;
use crate::store::{EventFilter, EventSummary};

/// Rows per page.
const PAGE: u32 = 50;

/// The table's query string.
#[derive(Deserialize, Default)]
pub struct EventsQuery {
    status: Option<String>,
}

/// The events page.
pub async fn list(
    State(state): State<UiState>,
    Extension(session): Extension<Session>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let status = q.status.and_then(|s| s.parse::<EventStatus>().ok());
    let filter = EventFilter {
        status: status.map(|s| s.as_str().to_string()),
        ..EventFilter::default()
    };
    let rows = state.app.db.list_page(filter, None, PAGE).await?.events;
    let content = html! {
        div.row {
            h1 { "Events" }
            span.spacer {}
            span.live { "live" }
        }
        div.card {
            form.filters method="get" action="/ui/events" {
                label { "Status"
                    select name="status" {
                        option value="" { "any" }
                        @for s in EventStatus::ALL {
                            option value=(s.as_str()) selected[status == Some(*s)] { (s.as_str()) }
                        }
                    }
                }
                button type="submit" { "Filter" }
                a href="/ui/events" { "Clear" }
            }
        }
        div.card { (table(&rows)) }
    };
    Ok(page("Events", "/ui/events", &session, content).into_response())
}

/// The events table; its body refreshes itself every two seconds.
pub fn table(rows: &[EventSummary]) -> Markup {
    html! {
        table.events {
            thead { tr {
                th.num { "#" } th { "Status" } th { "Received (UTC)" } th { "Source" }
                th { "Provider" } th { "Action" } th.num { "Attempts" } th { "Last error" }
            } }
            tbody id="event-rows" data-live="2000" {
                @for e in rows { (row(e)) }
                @if rows.is_empty() { tr { td colspan="8" .muted { "No events match." } } }
            }
        }
    }
}

fn row(e: &EventSummary) -> Markup {
    let href = format!("/ui/events/{}", e.id);
    html! {
        tr data-id=(e.id) {
            td.num { a href=(href) { (e.id) } }
            td { (status_badge(e.status.map(|v| v.as_str()).unwrap_or("?"))) }
            td.mono { (short_time(e.received_at.as_deref())) }
            td { (e.source.map(|v| v.as_str()).unwrap_or("")) }
            td { (e.provider.as_deref().unwrap_or("")) }
            td.mono { (e.action.as_deref().unwrap_or("")) }
            td.num { (e.attempt_count) }
            td.err title=[e.last_error.as_deref()] { (e.last_error.as_deref().unwrap_or("")) }
        }
    }
}

/// The `router` object of a stored result (empty when there is none yet).
pub fn router_of(result_json: Option<&str>) -> Value {
    result_json
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|mut v| v.get_mut("router").map(Value::take))
        .unwrap_or(Value::Null)
}
