//! The worker's side of flow control (CONTRACT §13): which runs of an attempt have a flow,
//! admission before they run, the slots' release after, pool pauses on rate limits, and
//! a cancelled run's event ending `superseded`.

use serde_json::{Value, json};

use super::Processor;
use super::replayed_output;
use crate::domain::flow::{Flow, KeyInput};
use crate::domain::{EventStatus, HandlerMode};
use crate::escape::escaped;
use crate::handlers::HandlerError;
use crate::routing::RouteDecision;
use crate::store::flow::{FlowAsk, FlowRun, FlowVerdict};
use crate::store::{ClaimedEvent, Finish, stored_payload};

/// The most stored payload bytes a `deliver: "all"` window hands over (the newest events
/// first; the delivered one always).
const MAX_DEBOUNCED_BYTES: usize = 16 << 20;

/// The runs of this attempt that have a flow, with their keys (empty: flow control is
/// not involved, and costs nothing).
pub fn runs(event: &ClaimedEvent, decision: &RouteDecision, payload: &Value) -> Vec<FlowRun> {
    let run = |action: &str, flow: &Flow| FlowRun {
        action: action.to_owned(),
        key: flow.render_key(&KeyInput {
            payload,
            provider: &decision.provider,
            action,
            event_type: decision.event_type.as_deref(),
        }),
        flow: flow.clone(),
    };
    if decision.actions.is_empty() {
        match (&decision.mapped_action, &decision.flow) {
            (Some(action), Some(flow)) if replayed_output(event, action).is_none() => vec![run(action, flow)],
            _ => Vec::new(),
        }
    } else {
        decision
            .actions
            .iter()
            .filter(|a| replayed_output(event, &a.action).is_none())
            .filter_map(|a| a.flow.as_deref().map(|f| run(&a.action, f)))
            .collect()
    }
}

/// Whether a failure is the provider saying "slow down" (CONTRACT §13): 429 or 529 from an
/// LLM API or the Claude CLI, 429 or 503 from an `http` target.
pub fn rate_limited(mode: HandlerMode, e: &HandlerError) -> bool {
    let kind = e.kind.as_deref().unwrap_or("");
    match mode {
        HandlerMode::Http => matches!(kind, "http_429" | "http_503"),
        HandlerMode::Agent | HandlerMode::Llm => matches!(kind, "http_429" | "http_529" | "rate_limited"),
        _ => false,
    }
}

impl Processor {
    /// Admission: `Some(debounced)` when the runs may start (holding their slots), `None`
    /// when the event waits, ended, or its claim was lost (all already stored).
    pub(super) async fn admit_flow(
        &self,
        event: &ClaimedEvent,
        provider: &str,
        runs: Vec<FlowRun>,
    ) -> Option<Option<Value>> {
        let first = runs
            .first()
            .map(|r| (r.action.clone(), r.key.clone()))
            .unwrap_or_default();
        let actions: Vec<String> = runs.iter().map(|r| r.action.clone()).collect();
        let ask = FlowAsk {
            claim: event.claim_ref(),
            provider: provider.to_owned(),
            runs,
        };
        let count = |kind: &'static str| {
            for a in &actions {
                crate::metrics::flow_decision(a, kind);
            }
        };
        match self.db.flow_admit(ask).await {
            Ok(FlowVerdict::Run { debounced }) => {
                count("run");
                if debounced.is_empty() {
                    Some(None)
                } else {
                    Some(Some(self.window_events(debounced).await))
                }
            }
            Ok(FlowVerdict::Wait { reason }) => {
                count("wait");
                tracing::info!(event_id = %escaped(&event.event_id), row_id = event.id, reason = %escaped(&reason), "event waiting (flow control)");
                None
            }
            Ok(FlowVerdict::Ended { status, by }) => {
                count(if status == EventStatus::Skipped {
                    "skip"
                } else {
                    "supersede"
                });
                tracing::info!(
                    event_id = %escaped(&event.event_id),
                    row_id = event.id,
                    action = %escaped(&first.0),
                    key = %escaped(&first.1),
                    %status,
                    by,
                    "event ended by flow control"
                );
                None
            }
            Ok(FlowVerdict::Lost) => {
                tracing::warn!(row_id = event.id, "claim was lost before flow admission");
                None
            }
            Err(e) => {
                // Nothing ran: the lease expires and the event is tried again.
                tracing::warn!(row_id = event.id, error = %e, "flow admission failed; the event is tried again when its lease expires");
                None
            }
        }
    }

    /// `debounced` for the handler: each event of the window with its payload, oldest
    /// first. Read newest first and cut at [`MAX_DEBOUNCED_BYTES`] of stored payloads, so
    /// that a window of large bodies cannot make an input of any size (the newest kept).
    async fn window_events(&self, ids: Vec<i64>) -> Value {
        let mut out = Vec::with_capacity(ids.len());
        let mut bytes = 0usize;
        for &id in ids.iter().rev() {
            match self.db.event(id).await {
                Ok(Some(row)) => {
                    let text = row.payload_json.unwrap_or_default();
                    bytes += text.len();
                    if bytes > MAX_DEBOUNCED_BYTES && !out.is_empty() {
                        tracing::info!(row_id = id, "debounce window over its size cap: older events left out");
                        break;
                    }
                    let mut payload: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    stored_payload::expand_value(&mut payload, row.source.unwrap_or(crate::domain::Source::Webhook));
                    out.push(json!({"row_id": id, "event_id": row.event_id, "payload": payload}));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(row_id = id, error = %e, "could not read an event of a debounce window"),
            }
        }
        out.reverse();
        Value::Array(out)
    }

    /// Frees the slots the attempt's runs held (a failure is logged: the sweep frees them
    /// once the claim is gone) and wakes this process's claim loop for who got one.
    pub(super) async fn release_flow(&self, row_id: i64) {
        match self.db.flow_release(row_id).await {
            Ok(0) => {}
            Ok(_) => {
                if let Some(wake) = self.wake.get() {
                    wake.notify_one();
                }
            }
            Err(e) => {
                tracing::warn!(row_id, error = %e, "could not free flow slots; they are freed when the claim ends")
            }
        }
    }

    /// A run in `pool` ended: a rate limit pauses the whole pool; a success resets the
    /// pause's back-off.
    pub(super) async fn after_pooled_run(
        &self,
        action: &str,
        mode: HandlerMode,
        pool: &str,
        attempt: &Result<Value, HandlerError>,
    ) {
        match attempt {
            Err(e) if rate_limited(mode, e) => match self.db.flow_pause(pool.to_owned(), e.retry_after).await {
                Ok(until) => {
                    crate::metrics::flow_decision(action, "pause");
                    tracing::warn!(pool, %until, action = %escaped(action), "rate limited: pausing the pool");
                }
                Err(err) => tracing::warn!(pool, error = %err, "could not pause the pool"),
            },
            Ok(_) => {
                if let Err(err) = self.db.flow_pool_ok(pool.to_owned()).await {
                    tracing::debug!(pool, error = %err, "could not reset the pool's back-off");
                }
            }
            Err(_) => {}
        }
    }

    /// A run cancelled by a newer event: store its runs (`cancelled`) and end the event
    /// `superseded`.
    pub(super) async fn supersede_cancelled(&self, event: &ClaimedEvent, finish: Finish, by: i64) {
        let mut runs: Vec<_> = finish.action_run.into_iter().collect();
        if let Some(more) = finish.fan_out {
            runs.extend(more.more_runs);
        }
        let action = runs
            .first()
            .map(|r| r.action.clone())
            .or(finish.action)
            .unwrap_or_default();
        for run in runs {
            if let Err(e) = self.db.start_action_run(run).await {
                tracing::warn!(row_id = event.id, error = %e, "could not store a cancelled run");
            }
        }
        crate::metrics::flow_decision(&action, "cancel");
        match self.db.flow_supersede_running(event.claim_ref(), action, by).await {
            Ok(true) => {
                tracing::info!(event_id = %escaped(&event.event_id), row_id = event.id, superseded_by = by, "run cancelled; event superseded")
            }
            Ok(false) => tracing::warn!(
                row_id = event.id,
                "claim was lost before the cancelled event could be stored"
            ),
            Err(e) => tracing::warn!(row_id = event.id, error = %e, "could not store the cancelled event"),
        }
    }
}
