//! One attempt at an event with several actions (fan-out, CONTRACT §12).
//!
//! Each action is its own unit: the attempt runs, concurrently, every action that has no
//! `done` run yet (a forced replay: every action), each under a worker slot of its own, and
//! writes each one's run. The event is `done` when all are; while any failed it is retried
//! (after the longest back-off any failed action asks for, so a `Retry-After` is never cut
//! short) until its attempts run out, then `error`. Its result lists every action's output
//! or error, also while it is not `done`, so it shows which actions are done.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ActionOutcome, Input, Processor, Route, RunTexts, Slots, log_finished, replayed_output};
use crate::flow::{self, Admission};
use crate::handlers::HandlerError;
use crate::routing::{RouteDecision, RoutedAction};
use crate::store::{ActionRunRecord, ClaimedEvent, FanOutFinish, Finish, Outcome, stored_result};
use crate::worker::backoff;
use crate::{metrics, time};

impl Processor {
    /// Admission for every action the attempt would run: the first hold's reason and end
    /// when any is held, so a fan-out event waits whole rather than runs half. (An action
    /// held after this, by a budget reached meanwhile, fails its attempt with the reason.)
    pub(super) async fn admit_fan_out(
        &self,
        event: &ClaimedEvent,
        decision: &RouteDecision,
    ) -> Option<(String, String)> {
        for a in decision
            .actions
            .iter()
            .filter(|a| replayed_output(event, &a.action).is_none())
        {
            if let Admission::Held { reason, until } =
                flow::admit(&self.db, &self.flow, event.id, &a.action, a.handler_mode).await
            {
                return Some((reason, until));
            }
        }
        None
    }

    /// Runs the actions of `decision.actions` not yet `done` and says how the attempt ended.
    pub(super) async fn attempt_fan_out(
        &self,
        event: &ClaimedEvent,
        decision: &RouteDecision,
        input: Input<'_>,
        slots: Slots,
        started: Instant,
    ) -> Finish {
        let router = input.router;
        let Slots { mut held, pool } = slots;
        let runs = decision.actions.iter().map(|a| {
            // Replayed actions run nothing and need no slot; the first action that runs
            // takes the slot the attempt's task holds.
            let slot = match replayed_output(event, &a.action) {
                Some(_) => Slot::None,
                None => held.take().map_or_else(|| Slot::From(pool.clone()), Slot::Held),
            };
            self.run_in_slot(event, decision, a, input, slot)
        });
        let outcomes = join_all(runs.collect()).await;
        let tally = Tally::of(&decision.actions, outcomes);

        let outcome = self.outcome(event, router, &tally);
        let failure_kind = tally
            .failures
            .first()
            .map(|(_, e)| e.kind.as_deref().unwrap_or("other"));
        metrics::attempt_finished(outcome.status(), failure_kind);
        log_finished(event, decision, &outcome, started.elapsed());
        let unfinished_result_json =
            (!matches!(outcome, Outcome::Done { .. })).then(|| unfinished_result(event, router, &tally.result));
        let mut runs = tally.runs.into_iter();
        let action_run = runs.next();
        Finish {
            claim: event.claim_ref(),
            outcome,
            // Any run of the event may hold the event's texts (a one-action `done` before
            // the routing changed); this finish may replace the result they read.
            other_runs_read_event: event.forced || !event.done_runs.is_empty(),
            action_run,
            provider: Some(decision.provider.clone()),
            action: decision.mapped_action.clone(),
            fan_out: Some(Box::new(FanOutFinish {
                more_runs: runs.collect(),
                unfinished_result_json,
            })),
        }
    }

    /// Runs one action once it has its slot, which it gives back when its handler ends.
    async fn run_in_slot(
        &self,
        event: &ClaimedEvent,
        decision: &RouteDecision,
        action: &RoutedAction,
        input: Input<'_>,
        slot: Slot,
    ) -> ActionOutcome {
        let _slot = slot.take().await;
        let route = Route {
            action: &action.action,
            mode: action.handler_mode,
            target: action.handler_target.as_deref(),
            flow: action.flow.as_deref(),
        };
        let outcome = self
            .run_action(event, &decision.provider, route, input, RunTexts::Full)
            .await;
        if let ActionOutcome::Ran { run, .. } = &outcome {
            metrics::fan_out_action_ran(&action.action, run.status);
        }
        outcome
    }

    /// `done` when every action is; else `retry` after the longest back-off a failed
    /// action asks for, or `error` when attempts are used up or no failure can pass later.
    fn outcome(&self, event: &ClaimedEvent, router: &Value, tally: &Tally) -> Outcome {
        if tally.failures.is_empty() {
            let result = json!({ "actions": tally.result });
            return Outcome::Done {
                result_json: stored_result::compact(router, &result, tally.all_replayed),
            };
        }
        // Which action failed and why, each named (a one-action event's is the bare message).
        let error = tally
            .failures
            .iter()
            .map(|(action, e)| format!("{action}: {}", e.message))
            .collect::<Vec<_>>()
            .join("; ");
        let retryable: Vec<&HandlerError> = tally.failures.iter().map(|(_, e)| e).filter(|e| !e.permanent).collect();
        if retryable.is_empty() || event.attempt_count >= i64::from(self.max_attempts) {
            return Outcome::Failed { error };
        }
        let delay = retryable
            .iter()
            .map(|e| backoff::delay(event.attempt_count, e.retry_after))
            .max()
            .unwrap_or(Duration::ZERO);
        Outcome::Retry {
            next_attempt_at: time::timestamp_after(delay),
            error,
        }
    }
}

/// The slot an action run waits for.
enum Slot {
    /// Replayed: runs nothing, needs none.
    None,
    /// The slot the attempt's task already holds.
    Held(OwnedSemaphorePermit),
    /// One more from the pool (none when unbounded).
    From(Option<std::sync::Arc<Semaphore>>),
}

impl Slot {
    /// Waits for the slot; the permit returned frees it when dropped.
    async fn take(self) -> Option<OwnedSemaphorePermit> {
        match self {
            Slot::None | Slot::From(None) => None,
            Slot::Held(p) => Some(p),
            // The pool's semaphore is never closed, so this waits rather than fails.
            Slot::From(Some(pool)) => pool.acquire_owned().await.ok(),
        }
    }
}

/// What the actions of one attempt gave, in the decision's order.
struct Tally {
    /// Each action's output, or `{"error": message}`.
    result: Map<String, Value>,
    /// The runs to store (replayed actions have none).
    runs: Vec<ActionRunRecord>,
    /// The failed actions and why.
    failures: Vec<(String, HandlerError)>,
    /// Whether no action ran (every output was replayed).
    all_replayed: bool,
}

impl Tally {
    fn of(actions: &[RoutedAction], outcomes: Vec<ActionOutcome>) -> Tally {
        let mut tally = Tally {
            result: Map::new(),
            runs: Vec::with_capacity(actions.len()),
            failures: Vec::new(),
            all_replayed: true,
        };
        for (action, outcome) in actions.iter().zip(outcomes) {
            tally.all_replayed &= matches!(outcome, ActionOutcome::Replayed { .. });
            let (attempt, run) = outcome.into_parts();
            tally.runs.extend(run);
            let output = match attempt {
                Ok(output) => output,
                Err(e) => {
                    let shown = json!({ "error": e.message });
                    tally.failures.push((action.action.clone(), e));
                    shown
                }
            };
            tally.result.insert(action.action.clone(), output);
        }
        tally
    }
}

/// The result stored while a fan-out is not `done`: the full form (not the compact one,
/// which reads back as `"ok": true`), with `"ok": false` and every action's output or error.
fn unfinished_result(event: &ClaimedEvent, router: &Value, outputs: &Map<String, Value>) -> String {
    json!({
        "event_id": event.event_id,
        "ok": false,
        "result": { "actions": outputs },
        "router": router,
        "source": event.source.as_str(),
    })
    .to_string()
}

/// Polls `futures` together on the current task and gives their outputs in order (tokio
/// has no `join_all`, and a task per action would need `'static` copies of the event).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_all_runs_futures_together_and_keeps_their_order() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        // The first waits for the second: run one after the other, this would never end.
        let first = async move { rx.await.unwrap_or(0) };
        let futures: Vec<Pin<Box<dyn Future<Output = u8>>>> = vec![
            Box::pin(first),
            Box::pin(async move {
                let _ = tx.send(7);
                2
            }),
        ];
        assert_eq!(join_all(futures).await, [7, 2]);
    }
}
