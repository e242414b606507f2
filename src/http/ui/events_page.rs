//! The events table: the API's filters (CONTRACT §10, parsed by the same
//! `EventFilter::from_pairs`), keyset pages by cursor, and live refresh of the page shown.

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::UiState;
use super::layout::{page, short_time, status_badge};
use super::session::Session;
use crate::domain::{EventStatus, Source};
use crate::error::ApiError;
use crate::escape::escaped;
use crate::store::{Cursor, EventFilter, EventPage, EventSummary, FILTER_KEYS};

/// Rows per page.
const PAGE: u32 = 50;

/// The filter as given in the query string: `(key, value)` for each key of [`FILTER_KEYS`].
type Given = Vec<(String, String)>;

/// The value given for `key` (empty when none).
fn given<'a>(f: &'a Given, key: &str) -> &'a str {
    f.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
}

/// The events page.
pub async fn list(
    State(state): State<UiState>,
    Extension(session): Extension<Session>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let cursor_text = pairs.iter().find(|(k, _)| k == "cursor").map(|(_, v)| v.as_str());
    let cursor = match cursor_text.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(text) => Cursor::decode(text).map(Some).ok_or("this page link is not valid"),
    };
    let filter = EventFilter::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let found = match (filter, cursor) {
        (Ok(filter), Ok(cursor)) => Ok(state.app.db.list_page(filter, cursor, PAGE).await?),
        (Err(e), _) => Err(e.to_string()),
        (_, Err(e)) => Err(e.to_string()),
    };
    let shown: Given = pairs
        .iter()
        .filter(|(k, v)| FILTER_KEYS.contains(&k.as_str()) && !v.trim().is_empty())
        .cloned()
        .collect();
    let paged = cursor_text.is_some_and(|c| !c.is_empty());
    let content = html! {
        div.row {
            h1 { "Events" }
            span.spacer {}
            span.live { "live" }
        }
        div.card { (filter_form(&shown)) }
        @match &found {
            Err(e) => p.flash.error { (e) },
            Ok(p) => div id="event-list" data-live="2000" {
                div.card {
                    (table(&p.events))
                    (pager(&shown, p, paged))
                }
            },
        }
    };
    Ok(page("Events", "/ui/events", &session, content).into_response())
}

/// The filter form, showing the filter as given.
fn filter_form(f: &Given) -> Markup {
    let text = |key: &str| given(f, key).to_owned();
    let status = given(f, "status");
    let source = given(f, "source");
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
            label { "Provider" input name="provider" size="10" value=(text("provider")); }
            label { "Action" input name="action" size="12" value=(text("action")); }
            label { "Source"
                select name="source" {
                    option value="" { "any" }
                    @for s in Source::ALL {
                        option value=(s.as_str()) selected[source == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            label { "Since (RFC 3339)" input name="since" size="22" placeholder="2026-01-02T03:04:05Z" value=(text("since")); }
            label { "Until" input name="until" size="22" value=(text("until")); }
            label { "Text (event id, error)" input name="q" size="16" value=(text("q")); }
            div.actions {
                button type="submit" { "Filter" }
                a.button href="/ui/events" { "Clear" }
            }
        }
    }
}

/// "Newest" (on a later page) and "Next page" links, keeping the filter.
fn pager(f: &Given, p: &EventPage, paged: bool) -> Markup {
    let next = p.next.as_ref().map(|c| href(f, Some(c)));
    html! {
        div.pager {
            @if paged { a.newest href=(href(f, None)) { "← newest" } } @else { span {} }
            @if let Some(next) = next { a.next href=(next) { "next page →" } }
        }
    }
}

/// The events page's URL for filter `f` at `cursor`.
fn href(f: &Given, cursor: Option<&Cursor>) -> String {
    let mut url = form_urlencoded::Serializer::new(String::new());
    for (key, value) in f {
        url.append_pair(key, value);
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
                th.num { "#" } th { "Status" } th { "Received (UTC)" } th { "Event id" } th { "Source" }
                th { "Provider" } th { "Action" } th.num { "Attempts" } th { "Last error or wait" }
            } }
            tbody id="event-rows" {
                @for e in rows { (row(e)) }
                @if rows.is_empty() { tr { td colspan="9" .muted { "No events match." } } }
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
            td.mono.event-id title=[e.event_id.as_deref()] { (e.event_id.as_deref().unwrap_or("")) }
            td { (e.source.map(|v| v.as_str()).unwrap_or("")) }
            td { (escaped(e.provider.as_deref().unwrap_or(""))) }
            td.mono {
                @match &e.actions {
                    // Fan-out: each action with its run's state.
                    Some(actions) => {
                        @for a in actions {
                            span.fan-action data-action=(a.action) data-state=(a.status.map_or("?", |s| s.as_str())) {
                                (escaped(&a.action)) " " (status_badge(a.status.map_or("?", |s| s.as_str())))
                            }
                            " "
                        }
                    }
                    None => (escaped(e.action.as_deref().unwrap_or(""))),
                }
            }
            td.num { (e.attempt_count) }
            @if e.status.is_some_and(|s| matches!(s, EventStatus::Waiting | EventStatus::Held)) {
                // What it waits for: a reason, not an error.
                td.reason title=[e.last_error.as_deref()] { (e.last_error.as_deref().unwrap_or("")) }
            } @else {
                td.err title=[e.last_error.as_deref()] { (e.last_error.as_deref().unwrap_or("")) }
            }
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
        let f: Given = vec![("status".into(), "error".into()), ("q".into(), "a b&c".into())];
        let c = Cursor {
            received_at: "2026-01-02T03:04:05+00:00".into(),
            id: 7,
        };
        assert_eq!(
            href(&f, Some(&c)),
            format!("/ui/events?status=error&q=a+b%26c&cursor={}", c.encode())
        );
        assert_eq!(href(&Vec::new(), None), "/ui/events");
        assert_eq!(given(&f, "q"), "a b&c");
        assert_eq!(given(&f, "provider"), "");
    }
}
