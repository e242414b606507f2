//! The events table: the API's filters (CONTRACT §10, validated by the same
//! `EventFilter::parse`), keyset pages by cursor, and live refresh of the page shown.

use axum::Extension;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::UiState;
use super::auth::Session;
use super::layout::{page, short_time, status_badge};
use crate::domain::{EventStatus, Source};
use crate::error::ApiError;
use crate::store::{Cursor, EventFilter, EventPage, EventSummary, FilterInput};

/// Rows per page.
const PAGE: u32 = 50;

/// The table's query string: the API's filter fields plus the page's cursor.
#[derive(Deserialize, Default)]
pub struct EventsQuery {
    #[serde(flatten)]
    filter: FilterInput,
    cursor: Option<String>,
}

/// The events page.
pub async fn list(
    State(state): State<UiState>,
    Extension(session): Extension<Session>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(text) => Cursor::decode(text).map(Some).ok_or("this page link is not valid"),
    };
    let found = match (EventFilter::parse(q.filter.clone()), cursor) {
        (Ok(filter), Ok(cursor)) => Ok(state.app.db.list_page(filter, cursor, PAGE).await?),
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(e.to_string()),
    };
    let paged = q.cursor.as_deref().is_some_and(|c| !c.is_empty());
    let content = html! {
        div.row {
            h1 { "Events" }
            span.spacer {}
            span.live { "live" }
        }
        div.card { (filter_form(&q.filter)) }
        @match &found {
            Err(e) => p.flash.error { (e) },
            Ok(p) => div id="event-list" data-live="2000" {
                div.card {
                    (table(&p.events))
                    (pager(&q.filter, p, paged))
                }
            },
        }
    };
    Ok(page("Events", "/ui/events", &session, content).into_response())
}

/// The filter form, showing the filter as given.
fn filter_form(f: &FilterInput) -> Markup {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let status = f.status.as_deref().unwrap_or("");
    let source = f.source.as_deref().unwrap_or("");
    html! {
        form.filters method="get" action="/ui/events" {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in EventStatus::ALL {
                        option value=(s.as_str()) selected[status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "Provider" input name="provider" size="10" value=(text(&f.provider)); }
            label { "Action" input name="action" size="12" value=(text(&f.action)); }
            label { "Source"
                select name="source" {
                    option value="" { "any" }
                    @for s in Source::ALL {
                        option value=(s.as_str()) selected[source == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "Since (RFC 3339)" input name="since" size="22" placeholder="2026-01-02T03:04:05Z" value=(text(&f.since)); }
            label { "Until" input name="until" size="22" value=(text(&f.until)); }
            label { "Text (event id, error)" input name="q" size="16" value=(text(&f.q)); }
            button type="submit" { "Filter" }
            a href="/ui/events" { "Clear" }
        }
    }
}

/// "Newest" (on a later page) and "Next page" links, keeping the filter.
fn pager(f: &FilterInput, p: &EventPage, paged: bool) -> Markup {
    let next = p.next.as_ref().map(|c| href(f, Some(c)));
    html! {
        div.pager {
            @if paged { a.newest href=(href(f, None)) { "← newest" } } @else { span {} }
            @if let Some(next) = next { a.next href=(next) { "next page →" } }
        }
    }
}

/// The events page's URL for filter `f` at `cursor`.
fn href(f: &FilterInput, cursor: Option<&Cursor>) -> String {
    let mut url = form_urlencoded::Serializer::new(String::new());
    let fields = [
        ("status", &f.status),
        ("provider", &f.provider),
        ("action", &f.action),
        ("source", &f.source),
        ("since", &f.since),
        ("until", &f.until),
        ("q", &f.q),
    ];
    for (name, value) in fields {
        if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
            url.append_pair(name, v);
        }
    }
    if let Some(c) = cursor {
        url.append_pair("cursor", &c.encode());
    }
    let query = url.finish();
    if query.is_empty() {
        "/ui/events".into()
    } else {
        format!("/ui/events?{query}")
    }
}

/// The events table (rows link to their event).
pub fn table(rows: &[EventSummary]) -> Markup {
    html! {
        table.events {
            thead { tr {
                th.num { "#" } th { "Status" } th { "Received (UTC)" } th { "Source" }
                th { "Provider" } th { "Action" } th.num { "Attempts" } th { "Last error" }
            } }
            tbody id="event-rows" {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_links_keep_the_filter_and_carry_the_cursor() {
        let f = FilterInput {
            status: Some("error".into()),
            q: Some("a b&c".into()),
            action: Some(" ".into()),
            ..FilterInput::default()
        };
        let c = Cursor {
            received_at: "2026-01-02T03:04:05+00:00".into(),
            id: 7,
        };
        assert_eq!(
            href(&f, Some(&c)),
            format!("/ui/events?status=error&q=a+b%26c&cursor={}", c.encode())
        );
        assert_eq!(href(&FilterInput::default(), None), "/ui/events");
    }
}
