//! One event: payload, the router's decision and reasons, every action run, every attempt
//! (`attempts_table`), and the replay, force replay and cancel buttons. The status and
//! runs refresh themselves, so a replay is seen finishing.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::UiState;
use super::auth::see_other;
use super::events_page::router_of;
use super::layout::{csrf_field, page, pretty_json, short_time, status_badge};
use super::session::Session;
use super::timeline::{timeline, usage_line};
use crate::domain::EventStatus;
use crate::error::ApiError;
use crate::escape::escaped;
use crate::store::{ActionRunRow, AttemptRow, EventRow, RunUsage, Transition};
use crate::views::FlowNote;

/// The notes a form's redirect may show (a fixed set: nothing from the URL is echoed).
const NOTES: &[(&str, &str)] = &[
    ("replayed", "Queued again with a fresh attempt budget."),
    (
        "forced",
        "Queued again with a fresh attempt budget; actions that already ran will run again.",
    ),
    (
        "busy",
        "The event is being processed right now; try again when it finishes.",
    ),
    (
        EventStatus::Cancelled.as_str(),
        "Cancelled: it will not be attempted again.",
    ),
    (
        "not-cancellable",
        "Only a pending, retry, held or waiting event can be cancelled.",
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
    let attempts = db.attempts(id).await?;
    let usage = db.run_usage(id).await?;
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
        div id="event-live" data-live="1500" { (live_part(&session, &event, &runs, &attempts, &usage)) }
        div.card {
            h2 { "Payload" }
            (pretty_json(event.payload_json.as_deref().unwrap_or("null")))
        }
    };
    Ok(page(&format!("Event {id}"), "/ui/events", &session, content).into_response())
}

/// The parts that change while the event is processed: status, decision, runs, buttons.
fn live_part(
    session: &Session,
    e: &EventRow,
    runs: &[ActionRunRow],
    attempts: &[AttemptRow],
    usage: &[RunUsage],
) -> Markup {
    let status = e.status.map(|v| v.as_str()).unwrap_or("?");
    let done = e.status == Some(EventStatus::Done);
    html! {
        div.grid {
            div.card {
                div.row {
                    h2 { "Status" }
                    (status_badge(status))
                    span.spacer {}
                    (buttons(session, e.id, e.status))
                }
                dl.facts {
                    dt { "Source" } dd { (e.source.map(|v| v.as_str()).unwrap_or("")) }
                    // Escaped: a bidi or zero-width character must not make one id look like another.
                    dt { "Event id" } dd.mono { (escaped(e.event_id.as_deref().unwrap_or(""))) }
                    dt { "Received" } dd.mono { (short_time(e.received_at.as_deref())) }
                    dt { "Attempts" } dd { (e.attempt_count) }
                    dt { "Next attempt" } dd.mono { (short_time(e.next_attempt_at.as_deref())) }
                    dt { "Processed" } dd.mono { (short_time(e.processed_at.as_deref())) }
                }
                @match FlowNote::of(e) {
                    Some(note) => (flow_note(&note)),
                    None => @if let Some(err) = e.last_error.as_deref().filter(|_| !done) {
                        h2 { "Last error" }
                        pre.error-text { (err) }
                    },
                }
            }
            div.card { (decision(e, runs)) }
        }
        div.card {
            h2 { "Action runs" }
            (runs_table(runs, usage))
        }
        (super::attempts_table::attempts_card(attempts))
        @if let Some(result) = e.result_json.as_deref() {
            div.card { details { summary { "Stored result" } (pretty_json(result)) } }
        }
    }
}

/// Replay and force replay (not while processing), cancel (only pending, retry, held or
/// waiting, as the API allows); each posts in the background and the live part shows the
/// outcome.
fn buttons(session: &Session, id: i64, status: Option<EventStatus>) -> Markup {
    let replay = format!("/ui/events/{id}/replay");
    let cancel = format!("/ui/events/{id}/cancel");
    html! {
        @if status != Some(EventStatus::Processing) {
            form.inline method="post" action=(replay) data-async {
                (csrf_field(session))
                button.primary type="submit" { "Replay" }
            }
            form.inline.force method="post" action=(replay) data-async
                data-confirm="Run every action again, including those that already succeeded?" {
                (csrf_field(session))
                input type="hidden" name="force" value="1";
                button type="submit" { "Force replay" }
            }
        }
        @if status.is_some_and(EventStatus::is_cancellable) {
            form.inline.cancel method="post" action=(cancel) data-async
                data-confirm="Cancel this event? It will never be attempted again." {
                (csrf_field(session))
                button.danger type="submit" { "Cancel" }
            }
        }
    }
}

/// What a waiting or held event waits for (its `last_error`, which is a reason here, not an
/// error), or the event that holds the key of a skipped one or took the place of a
/// superseded one, linked (CONTRACT §13).
fn flow_note(note: &FlowNote) -> Markup {
    html! {
        @match note {
            FlowNote::Waiting { reason, .. } => {
                h2 { "Waiting for" }
                // Escaped: a key rendered from the payload may hold control characters.
                pre.wait-text data-flow="waiting" { (escaped(reason)) }
            }
            FlowNote::Ended { status, by, action, key, .. } => {
                @let link = html! { a href=(format!("/ui/events/{by}")) { "event " (by) } };
                p.flow-note data-flow=(status.as_str()) data-by=(by) {
                    @if *status == EventStatus::Skipped {
                        "Skipped: " (link) " holds its key"
                    } @else {
                        "Superseded by " (link)
                    }
                    @if let Some(a) = action {
                        " " span.muted {
                            "(action " span.mono { (escaped(a)) }
                            @if let Some(k) = key.as_deref().filter(|k| !k.is_empty()) { ", key " span.mono { (escaped(k)) } }
                            ")"
                        }
                    }
                }
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
            @if let Some(actions) = router.get("actions").and_then(Value::as_array) {
                (fan_out(actions, runs))
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

/// The actions of a fan-out decision, in order, each with its run's state: which are
/// done and which failed.
fn fan_out(actions: &[Value], runs: &[ActionRunRow]) -> Markup {
    html! {
        h2 { "Actions" }
        ul.fan-out {
            @for a in actions {
                @let name = a.get("action").and_then(Value::as_str).unwrap_or("");
                @let run = runs.iter().find(|r| r.action.as_deref() == Some(name));
                @let state = run.and_then(|r| r.status).map_or("not run", |s| s.as_str());
                li.fan-action data-action=(name) data-state=(state) {
                    span.mono { (name) } " " (status_badge(state))
                    @if let Some(r) = run { " " (run_attempts(r)) }
                    @if let Some(err) = run.and_then(|r| r.error.as_deref()) { " " span.err { (err) } }
                }
            }
        }
    }
}

fn runs_table(runs: &[ActionRunRow], usage: &[RunUsage]) -> Markup {
    html! {
        @if runs.is_empty() { p.muted { "No action has run." } }
        @for r in runs {
            div.run data-action=[r.action.as_deref()] {
                div.row {
                    (status_badge(r.status.map(|v| v.as_str()).unwrap_or("?")))
                    (run_attempts(r))
                    span.mono { (r.action.as_deref().unwrap_or("")) }
                    span.muted { (r.handler_mode.map(|v| v.as_str()).unwrap_or("")) " " (r.handler_target.as_deref().unwrap_or("")) }
                    span.spacer {}
                    span.mono.muted { (short_time(r.started_at.as_deref())) " → " (short_time(r.finished_at.as_deref())) }
                }
                @if let Some(u) = usage.iter().find(|u| u.run_id == r.id) {
                    div.row {
                        @if let Some(usage) = &u.usage { (usage_line(usage)) }
                        @if u.transcript_bytes.is_some() {
                            a.timeline-link href=(format!("/ui/events/{}/runs/{}", r.event_row_id, r.id)) { "Timeline →" }
                        }
                    }
                }
                @if let Some(err) = r.error.as_deref() { pre.error-text { (err) } }
                @if let Some(out) = r.output_json.as_deref() { details { summary { "Output" } (pretty_json(out)) } }
            }
        }
    }
}

/// How many times the run's handler ran (CONTRACT §12), beside its state.
fn run_attempts(r: &ActionRunRow) -> Markup {
    let unit = if r.attempts == 1 { "attempt" } else { "attempts" };
    html! { span.muted.run-attempts data-attempts=(r.attempts) { (r.attempts) " " (unit) } }
}

/// One agent run's transcript as a timeline.
pub async fn run_timeline(
    State(state): State<UiState>,
    Extension(session): Extension<Session>,
    Path((id, run_id)): Path<(i64, i64)>,
) -> Result<Response, ApiError> {
    let db = &state.app.db;
    let transcript = db
        .transcript(id, run_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id} has no action run {run_id}")))?;
    let usage = db.run_usage(id).await?;
    let run_usage = usage.iter().find(|u| u.run_id == run_id).and_then(|u| u.usage.as_ref());
    let content = html! {
        div.row {
            h1 { "Run " (run_id) " of event " (id) }
            span.spacer {}
            a href=(format!("/ui/events/{id}")) { "← event" }
        }
        div.card {
            @if let Some(u) = run_usage { p { (usage_line(u)) } }
            @match transcript.as_deref() {
                Some(text) => (timeline(text)),
                None => p.muted { "This run has no transcript." },
            }
        }
    };
    Ok(page(&format!("Run {run_id}"), "/ui/events", &session, content).into_response())
}

/// The replay form's fields (the CSRF token is checked by the middleware).
#[derive(Deserialize)]
pub struct ReplayForm {
    /// `1` reruns actions that already ran to `done` (as the API's `?force=1`).
    force: Option<String>,
}

/// Queues the event again, forced or not.
pub async fn replay(
    State(state): State<UiState>,
    Path(id): Path<i64>,
    Form(form): Form<ReplayForm>,
) -> Result<Response, ApiError> {
    let force = form.force.as_deref() == Some("1");
    let queued = state.app.db.replay(id, force).await? == Transition::Applied;
    if queued {
        state.app.wake.notify_one();
    }
    let note = match (queued, force) {
        (false, _) => "busy",
        (true, false) => "replayed",
        (true, true) => "forced",
    };
    Ok(see_other(&format!("/ui/events/{id}?note={note}")))
}

/// The cancel form's fields (the CSRF token is checked by the middleware).
#[derive(Deserialize)]
pub struct CancelForm {}

/// Cancels a pending, retry, held or waiting event.
pub async fn cancel(
    State(state): State<UiState>,
    Path(id): Path<i64>,
    Form(_form): Form<CancelForm>,
) -> Result<Response, ApiError> {
    let note = match state.app.db.cancel(id).await? {
        Transition::Applied => {
            // A waiting event it held back in a flow line may be due now.
            state.app.wake.notify_one();
            EventStatus::Cancelled.as_str()
        }
        Transition::NotFound => return Err(ApiError::NotFound(format!("event {id} not found"))),
        Transition::Conflict(_) => "not-cancellable",
    };
    Ok(see_other(&format!("/ui/events/{id}?note={note}")))
}
