//! One event: payload, the router's decision and reasons, every action run, and the
//! replay button. The status and runs refresh themselves, so a replay is seen finishing.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::UiState;
use super::auth::{Session, see_other};
use super::events_page::router_of;
use super::layout::{csrf_field, page, pretty_json, short_time, status_badge};
use crate::error::ApiError;
use crate::store::{ActionRunRow, EventRow};

/// The notes a form's redirect may show (a fixed set: nothing from the URL is echoed).
const NOTES: &[(&str, &str)] = &[
    ("replayed", "Queued again with a fresh attempt budget."),
    (
        "busy",
        "The event is being processed right now; try again when it finishes.",
    ),
];

/// The event page's query string.
#[derive(Deserialize)]
pub struct EventQuery {
    note: Option<String>,
}

/// Shows one event.
pub async fn show(
    State(state): State<UiState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Query(q): Query<EventQuery>,
) -> Result<Response, ApiError> {
    let db = &state.app.db;
    let event = db
        .event(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
    let runs = db.action_runs(id).await?;
    let note = NOTES
        .iter()
        .find(|(k, _)| Some(*k) == q.note.as_deref())
        .map(|(_, v)| *v);
    let content = html! {
        div.row {
            h1 { "Event " (event.id) }
            span.spacer {}
            a href="/ui/events" { "← all events" }
        }
        p.flash.ok data-for-forms hidden[note.is_none()] { (note.unwrap_or("")) }
        div id="event-live" data-live="1500" { (live_part(&session, &event, &runs)) }
        div.card {
            h2 { "Payload" }
            (pretty_json(event.payload_json.as_deref().unwrap_or("null")))
        }
    };
    Ok(page(&format!("Event {id}"), "/ui/events", &session, content).into_response())
}

/// The parts that change while the event is processed: status, decision, runs, buttons.
fn live_part(session: &Session, e: &EventRow, runs: &[ActionRunRow]) -> Markup {
    let status = e.status.map(|v| v.as_str()).unwrap_or("?");
    html! {
        div.grid {
            div.card {
                div.row {
                    h2 { "Status" }
                    (status_badge(status))
                    span.spacer {}
                    (buttons(session, e.id, status))
                }
                dl.facts {
                    dt { "Source" } dd { (e.source.map(|v| v.as_str()).unwrap_or("")) }
                    dt { "Event id" } dd.mono { (e.event_id.as_deref().unwrap_or("")) }
                    dt { "Received" } dd.mono { (short_time(e.received_at.as_deref())) }
                    dt { "Attempts" } dd { (e.attempt_count) }
                    dt { "Next attempt" } dd.mono { (short_time(e.next_attempt_at.as_deref())) }
                    dt { "Processed" } dd.mono { (short_time(e.processed_at.as_deref())) }
                }
                @if let Some(err) = e.last_error.as_deref().filter(|_| status != "done") {
                    h2 { "Last error" }
                    pre.error-text { (err) }
                }
            }
            div.card { (decision(e, runs)) }
        }
        div.card {
            h2 { "Action runs" }
            (runs_table(runs))
        }
        @if let Some(result) = e.result_json.as_deref() {
            div.card { details { summary { "Stored result" } (pretty_json(result)) } }
        }
    }
}

fn buttons(session: &Session, id: i64, status: &str) -> Markup {
    let action = format!("/ui/events/{id}/replay");
    html! {
        @if status != "processing" {
            form.inline method="post" action=(action) data-async {
                (csrf_field(session))
                button.primary type="submit" { "Replay" }
            }
        }
    }
}

/// The router's decision: from the stored result, else from the last run's input.
fn decision(e: &EventRow, runs: &[ActionRunRow]) -> Markup {
    let mut router = router_of(e.result_json.as_deref());
    if router.is_null() {
        router = runs
            .iter()
            .find_map(|r| r.input_json.as_deref())
            .and_then(|i| serde_json::from_str::<Value>(i).ok())
            .and_then(|mut v| v.get_mut("router").map(Value::take))
            .unwrap_or(Value::Null);
    }
    let text = |k: &str| router.get(k).and_then(Value::as_str).unwrap_or("—").to_owned();
    html! {
        h2 { "Router decision" }
        @if router.is_null() {
            p.muted { "Not routed yet." }
        } @else {
            dl.facts {
                dt { "Provider" } dd { (text("provider")) " "
                    span.muted { "(" (router.get("confidence").and_then(Value::as_f64).unwrap_or(0.0)) ")" } }
                dt { "Matched rule" } dd.mono { (text("matched_rule")) }
                dt { "Action" } dd.mono { (text("mapped_action")) }
                dt { "Handler" } dd.mono { (text("handler_mode")) " " (router.get("handler_target").and_then(Value::as_str).unwrap_or("")) }
            }
            h2 { "Reasons" }
            ul.reasons {
                @for r in router.get("reasons").and_then(Value::as_array).into_iter().flatten() {
                    li { (r.as_str().unwrap_or("")) }
                }
            }
        }
    }
}

fn runs_table(runs: &[ActionRunRow]) -> Markup {
    html! {
        @if runs.is_empty() { p.muted { "No action has run." } }
        @for r in runs {
            div.run {
                div.row {
                    (status_badge(r.status.map(|v| v.as_str()).unwrap_or("?")))
                    span.mono { (r.action.as_deref().unwrap_or("")) }
                    span.muted { (r.handler_mode.map(|v| v.as_str()).unwrap_or("")) " " (r.handler_target.as_deref().unwrap_or("")) }
                    span.spacer {}
                    span.mono.muted { (short_time(r.started_at.as_deref())) " → " (short_time(r.finished_at.as_deref())) }
                }
                @if let Some(err) = r.error.as_deref() { pre.error-text { (err) } }
                @if let Some(out) = r.output_json.as_deref() { details { summary { "Output" } (pretty_json(out)) } }
            }
        }
    }
}

/// The replay form's fields (the CSRF token is checked by the middleware).
#[derive(Deserialize)]
pub struct ReplayForm {}

/// Queues the event again.
pub async fn replay(
    State(state): State<UiState>,
    Path(id): Path<i64>,
    Form(_form): Form<ReplayForm>,
) -> Result<Response, ApiError> {
    let queued = state.app.db.replay(id, false).await? == crate::store::Transition::Applied;
    if queued {
        state.app.wake.notify_one();
    }
    let note = if queued { "replayed" } else { "busy" };
    Ok(see_other(&format!("/ui/events/{id}?note={note}")))
}
