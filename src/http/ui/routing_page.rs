//! The routing page: mappings and rules in evaluation order, and the "try it" box.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::UiState;
use super::layout::{csrf_field, page, pretty_json};
use super::session::Session;
use super::try_route::{Outcome, Trial, envelope_for, trial};
use crate::domain::flow::{Deliver, Flow, OnConflict, format_duration};
use crate::error::ApiError;
use crate::ingest::sources::Sources;
use crate::routing::RouteDecision;
use crate::store::RoutingTables;
use crate::store::flow::FlowState;

/// The "try it" form: a stored event, or a pasted webhook.
#[derive(Deserialize, Default)]
pub struct TryForm {
    /// Row id of a stored event (wins when given).
    #[serde(default)]
    event: String,
    /// `/webhook/<hint>` of the pasted webhook.
    #[serde(default)]
    hint: String,
    /// Pasted headers, one `Name: value` per line.
    #[serde(default)]
    headers: String,
    /// Pasted body.
    #[serde(default)]
    body: String,
}

/// The routing page.
pub async fn show(State(state): State<UiState>, Extension(session): Extension<Session>) -> Result<Response, ApiError> {
    render(&state, &session, &TryForm::default(), None).await
}

/// Runs the routing core on the form's payload and shows the outcome with the page.
pub async fn try_it(
    State(state): State<UiState>,
    Extension(session): Extension<Session>,
    Form(form): Form<TryForm>,
) -> Result<Response, ApiError> {
    let payload = match form.event.trim() {
        "" => envelope_for(Some(&form.hint), &form.headers, &form.body),
        id => match id.parse::<i64>() {
            Err(_) => Err(format!("'{id}' is not an event number")),
            Ok(id) => match state.app.db.event(id).await? {
                None => Err(format!("event {id} not found")),
                Some(e) => serde_json::from_str::<Value>(e.payload_json.as_deref().unwrap_or("null"))
                    .map_err(|e| format!("the stored payload is not JSON: {e}")),
            },
        },
    };
    render(&state, &session, &form, Some(payload)).await
}

async fn render(
    state: &UiState,
    session: &Session,
    form: &TryForm,
    outcome: Option<Result<Value, String>>,
) -> Result<Response, ApiError> {
    let mut tables = state.app.db.routing_tables().await?;
    tables
        .rules
        .sort_by(|a, b| (&a.provider, a.priority, a.id).cmp(&(&b.provider, b.priority, b.id)));
    tables.mappings.sort_by(|a, b| a.provider.cmp(&b.provider));
    let flows = state.app.db.flow_state().await?;
    let result = outcome.map(|o| o.map(|payload| (trial(&payload, &tables), payload)));
    let content = html! {
        h1 { "Routing" }
        div.card id="try" {
            h2 { "Try it" }
            p.muted { "Which rule would route this payload, and why. Nothing runs and nothing is stored." }
            (try_form(session, form))
            @match &result {
                Some(Ok((t, payload))) => (trial_view(t, payload)),
                Some(Err(e)) => p.flash.error { (e) },
                None => {},
            }
        }
        (sources_view(&state.app.sources))
        (tables_view(&tables))
        (flow_view(&tables, &flows))
    };
    Ok(page("Routing", "/ui/routing", session, content).into_response())
}

fn try_form(session: &Session, form: &TryForm) -> Markup {
    html! {
        form method="post" action="/ui/routing/try#try" {
            (csrf_field(session))
            div.row {
                label { "Stored event #" input type="text" name="event" value=(form.event) size="8" placeholder="e.g. 42"; }
                span.muted { "or paste a webhook:" }
                label { "Path hint (/webhook/…)" input type="text" name="hint" value=(form.hint) size="14"; }
            }
            div.grid {
                label { "Headers (Name: value per line)" textarea name="headers" rows="5" { (form.headers) } }
                label { "Body" textarea name="body" rows="5" { (form.body) } }
            }
            button.primary type="submit" { "Try it" }
        }
    }
}

/// Every action the event would run, in order: the decision's fan-out list, or its one
/// action (none without a route).
fn actions_of(d: &RouteDecision) -> Vec<(&str, &str, &str)> {
    if !d.actions.is_empty() {
        return d
            .actions
            .iter()
            .map(|a| {
                (
                    a.action.as_str(),
                    a.handler_mode.as_str(),
                    a.handler_target.as_deref().unwrap_or(""),
                )
            })
            .collect();
    }
    d.mapped_action.as_deref().map_or_else(Vec::new, |a| {
        let mode = d.handler_mode.map_or("noop", |m| m.as_str());
        vec![(a, mode, d.handler_target.as_deref().unwrap_or(""))]
    })
}

/// Whether the rule named `name` adds an action to the decision.
fn chosen(d: &RouteDecision, name: &str) -> bool {
    d.matched_rule.as_deref() == Some(name) || d.actions.iter().any(|a| a.matched_rule.as_deref() == Some(name))
}

fn trial_view(t: &Trial, payload: &Value) -> Markup {
    let d = &t.decision;
    let actions = actions_of(d);
    html! {
        div.trial id="trial" {
            h2 { "Outcome" }
            dl.facts {
                dt { "Provider" } dd { (d.provider) " " span.muted { "(" (d.confidence) ")" } }
                dt { "Matched rule" } dd.mono.match-rule { (d.matched_rule.as_deref().unwrap_or("none")) }
                dt { "Action" } dd.mono { (d.mapped_action.as_deref().unwrap_or("no route")) }
                dt { "Handler" } dd.mono { (d.handler_mode.map(|m| m.as_str()).unwrap_or("")) " " (d.handler_target.as_deref().unwrap_or("")) }
            }
            h3 { "Actions it would run" }
            ol.actions {
                @for (action, mode, target) in &actions {
                    li.mono.action { (action) " " span.muted { "(" (mode) @if !target.is_empty() { " " (target) } ")" } }
                }
                @if actions.is_empty() { li.muted { "none: no route" } }
            }
            ul.reasons { @for r in &d.reasons { li { (r) } } }
            table {
                thead { tr { th { "Rule" } th.num { "Priority" } th { "Outcome" } th { "Signals" } } }
                tbody {
                    @for c in &t.checks {
                        tr {
                            td.mono { (c.rule.name) }
                            td.num { (c.rule.priority) }
                            @match &c.outcome {
                                Outcome::Disabled => { td { span.nomatch { "disabled" } } td {} }
                                Outcome::Invalid(e) => { td { span.nomatch { "invalid conditions, skipped" } } td.mono { (e) } }
                                Outcome::NoMatch => { td { span.nomatch { "no match" } } td {} }
                                Outcome::Match(signals) => {
                                    td {
                                        @if chosen(d, &c.rule.name) {
                                            span.match { "matches: chosen" }
                                            @if c.rule.continue_after_match { span.muted { " (continue)" } }
                                        }
                                        @else { span.muted { "matches (an earlier rule won)" } }
                                    }
                                    td.mono { (signals.join(", ")) }
                                }
                            }
                        }
                    }
                    @if t.checks.is_empty() { tr { td colspan="4" .muted { "No rules for " (d.provider) "." } } }
                }
            }
            @if let Some(m) = &t.mapping {
                p.muted { "Mapping of " (m.provider) ": " (m.action) " (" (m.handler_mode.as_str()) ")" @if !m.enabled { ", disabled" } }
            }
            details { summary { "Payload as routed" } (pretty_json(&payload.to_string())) }
        }
    }
}

/// Signed webhook paths: name, scheme and provider; never a secret, only how many there are.
fn sources_view(sources: &Sources) -> Markup {
    let mut list: Vec<_> = sources.iter().collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    html! {
        div.card {
            h2 { "Sources" }
            table {
                thead { tr { th { "Path" } th { "Scheme" } th { "Provider" } th.num { "Secrets" } th.num { "Tolerance (s)" } } }
                tbody {
                    @for s in &list {
                        tr { td.mono { (s.path()) } td { (s.scheme.name()) } td { (s.provider) }
                             td.num { (s.secret_count()) } td.num { (s.tolerance.map(|t| t.to_string()).unwrap_or_default()) } }
                    }
                    @if list.is_empty() { tr { td colspan="5" .muted { "No signed sources: webhooks use the shared secrets." } } }
                }
            }
        }
    }
}

fn tables_view(tables: &RoutingTables) -> Markup {
    html! {
        div.card {
            h2 { "Mappings" }
            table {
                thead { tr { th { "Provider" } th { "Action" } th { "Handler" } th { "Target" } th { "Enabled" } th { "Flow" } } }
                tbody {
                    @for m in &tables.mappings {
                        tr { td { (m.provider) } td.mono { (m.action) } td { (m.handler_mode.as_str()) }
                             td.mono { (m.handler_target.as_deref().unwrap_or("")) } td { (if m.enabled { "yes" } else { "no" }) }
                             (flow_cell(m.flow.as_ref())) }
                    }
                    @if tables.mappings.is_empty() { tr { td colspan="6" .muted { "No mappings." } } }
                }
            }
        }
        div.card {
            h2 { "Rules, in evaluation order" }
            table {
                thead { tr { th { "Provider" } th.num { "Priority" } th { "Name" } th { "Conditions" } th { "Action" } th { "Handler" } th { "Enabled" } th title="After a match, later rules are evaluated too (fan-out)" { "Continue" } th { "Flow" } } }
                tbody {
                    @for r in &tables.rules {
                        tr { td { (r.provider) } td.num { (r.priority) } td.mono { (r.name) }
                             td.mono { (r.conditions_json) } td.mono { (r.action) }
                             td { (r.handler_mode.as_str()) " " span.mono { (r.handler_target.as_deref().unwrap_or("")) } }
                             td { (if r.enabled { "yes" } else { "no" }) }
                             td.continue { (if r.continue_after_match { "yes" } else { "" }) }
                             (flow_cell(r.flow.as_ref())) }
                    }
                    @if tables.rules.is_empty() { tr { td colspan="9" .muted { "No rules." } } }
                }
            }
        }
    }
}

/// A route's flow settings in a few words; the stored JSON in the tooltip.
fn flow_cell(flow: Option<&Flow>) -> Markup {
    match flow {
        None => html! { td.flow {} },
        Some(f) => html! { td.flow.mono title=(f.to_json().to_string()) { (flow_summary(f)) } },
    }
}

/// `key {{payload.pr}} · limit 4 · per key 1 · supersede · debounce 90s (max 10m, all) ·
/// rate 30/1h · pool anthropic`: what is set, in the contract's order.
fn flow_summary(f: &Flow) -> String {
    let mut parts = Vec::new();
    if let Some(key) = &f.key {
        parts.push(format!("key {}", key.as_str()));
    }
    if let Some(limit) = f.limit {
        parts.push(format!("limit {limit}"));
    }
    if let Some(per_key) = f.per_key {
        parts.push(format!("per key {per_key}"));
    }
    if f.on_conflict != OnConflict::Queue {
        parts.push(f.on_conflict.as_str().to_owned());
    }
    if let Some(d) = &f.debounce {
        let mut extra = Vec::new();
        if let Some(max_wait) = d.max_wait {
            extra.push(format!("max {}", format_duration(max_wait)));
        }
        if d.deliver == Deliver::All {
            extra.push("all".to_owned());
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" ({})", extra.join(", "))
        };
        parts.push(format!("debounce {}{extra}", format_duration(d.quiet)));
    }
    if let Some(r) = &f.rate {
        parts.push(format!("rate {}/{}", r.limit, format_duration(r.per)));
    }
    if let Some(pool) = &f.pool {
        parts.push(format!("pool {pool}"));
    }
    if parts.is_empty() {
        // `{}`: the defaults, one queue per action.
        parts.push(OnConflict::Queue.as_str().to_owned());
    }
    parts.join(" · ")
}

/// Flow control now: runs holding a slot and events waiting, per action (every action
/// with a flow, and any other still holding rows), and the pools.
fn flow_view(tables: &RoutingTables, state: &FlowState) -> Markup {
    let mut actions: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let with_flow = tables
        .mappings
        .iter()
        .filter(|m| m.flow.is_some())
        .map(|m| m.action.as_str())
        .chain(
            tables
                .rules
                .iter()
                .filter(|r| r.flow.is_some())
                .map(|r| r.action.as_str()),
        );
    for action in with_flow {
        actions.entry(action).or_default();
    }
    for (action, n) in &state.running {
        actions.entry(action).or_default().0 = *n;
    }
    for (action, n) in &state.waiting {
        actions.entry(action).or_default().1 = *n;
    }
    let now = crate::time::now();
    html! {
        div.card id="flow" {
            h2 { "Flow control" }
            @if actions.is_empty() && state.pools.is_empty() {
                p.muted { "No route has flow control." }
            } @else {
                table.flow-actions {
                    thead { tr { th { "Action" } th.num { "Running" } th.num { "Waiting" } } }
                    tbody {
                        @for (action, (running, waiting)) in &actions {
                            tr { td.mono { (action) } td.num.running { (running) } td.num.waiting { (waiting) } }
                        }
                        @if actions.is_empty() { tr { td colspan="3" .muted { "No action has flow control." } } }
                    }
                }
                table.flow-pools {
                    thead { tr { th { "Pool" } th.num { "Running / limit" } th { "Paused until" } } }
                    tbody {
                        @for p in &state.pools {
                            tr { td.mono { (p.name) } td.num { (p.running) " / " (p.limit) }
                                 td.mono { (p.paused_until.as_deref().filter(|until| *until > now.as_str()).unwrap_or("")) } }
                        }
                        @if state.pools.is_empty() { tr { td colspan="3" .muted { "No pools." } } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_flow_reads_in_a_few_words() {
        let pools = ["anthropic".to_owned()];
        let f = Flow::parse(
            &json!({"key": "{{payload.pr}}", "concurrency": {"limit": 4, "per_key": 1},
                    "on_conflict": "supersede", "debounce": {"quiet": "90s", "max_wait": "10m", "deliver": "all"},
                    "rate": {"limit": 30, "per": "1h"}, "pool": "anthropic"}),
            Some(&pools),
        )
        .unwrap();
        assert_eq!(
            flow_summary(&f),
            "key {{payload.pr}} · limit 4 · per key 1 · supersede · debounce 90s (max 10m, all) · rate 30/1h · pool anthropic"
        );
        assert_eq!(flow_summary(&Flow::default()), "queue");
    }
}
