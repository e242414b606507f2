//! One attempt at one event: route, run the handler (once per action), record the outcome.

mod fan_out;
mod flow_gate;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::backoff;
use crate::domain::RunStatus;
use crate::escape::{LogUrl, escaped};
use crate::flow::{self, Admission, FlowConfig};
use crate::handlers::{self, HandlerConfig, HandlerError, HandlerInput, HandlerMode};
use crate::routing::RouteDecision;
use crate::routing::cache::RoutingCache;
use crate::store::{ActionRunRecord, ClaimedEvent, Db, Finish, Outcome, run_input, stored_payload, stored_result};
use crate::{metrics, time};

/// Processes claimed events; shared by every worker task of a process.
pub struct Processor {
    db: Db,
    routes: RoutingCache,
    handlers: Arc<HandlerConfig>,
    max_attempts: u32,
    flow: FlowConfig,
    /// Runs holding a flow slot, by event row id: set to the superseding event's row id
    /// when `on_conflict: cancel_running` asks them to stop ([`super::cancel`]).
    pub(super) cancels: super::cancel::Registry,
    /// Wakes this process's claim loop when a freed slot made a waiting event due.
    wake: std::sync::OnceLock<Arc<tokio::sync::Notify>>,
}

/// The one `info` line of a finished attempt: who, where it went, how it ended, how long.
/// `tracing` formats its fields only when the level filter lets the line through. Every
/// value from outside is escaped, and an `http` target loses credentials and query
/// (CONTRACT §11).
fn log_finished(event: &ClaimedEvent, decision: &RouteDecision, outcome: &Outcome, took: Duration) {
    let (error, next_attempt_at) = match outcome {
        Outcome::Done { .. } => (None, None),
        Outcome::Retry { error, next_attempt_at } => (Some(error.as_str()), Some(next_attempt_at.as_str())),
        Outcome::Failed { error } => (Some(error.as_str()), None),
    };
    let target = decision.handler_target.as_deref().unwrap_or("-");
    let is_url = decision.handler_mode == Some(HandlerMode::Http);
    tracing::info!(
        event_id = %escaped(&event.event_id),
        row_id = event.id,
        source = %event.source,
        provider = %escaped(&decision.provider),
        action = %escaped(decision.mapped_action.as_deref().unwrap_or("-")),
        handler = %handler_name(decision),
        target = %LogTarget { target, is_url },
        outcome = %outcome.status(),
        attempt = event.attempt_count,
        duration_ms = took.as_millis() as u64,
        // Free text, so written quoted: tracing writes a `&str` with Rust's debug escapes,
        // which cover the same characters as `escaped`.
        error,
        next_attempt_at,
        "event attempt finished"
    );
}

/// A handler target in a log line: a URL without credentials and query, or escaped text.
struct LogTarget<'a> {
    target: &'a str,
    is_url: bool,
}

impl std::fmt::Display for LogTarget<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_url {
            LogUrl(self.target).fmt(f)
        } else {
            escaped(self.target).fmt(f)
        }
    }
}

/// The handler an attempt ran: the routed mode (noop by default) or the generic runner.
fn handler_name(decision: &RouteDecision) -> &str {
    match (&decision.mapped_action, &decision.handler_mode) {
        (None, _) => "unrouted",
        (Some(_), Some(mode)) => mode.as_str(),
        (Some(_), None) => HandlerMode::Noop.as_str(),
    }
}

/// Whether a run this finish does not rewrite may hold the event-input marker: any `done`
/// run (those are the marked ones) of another action than `run`'s, or any run at all when
/// a forced replay did not read them. A replayed `done` run is not rewritten, so it counts.
fn other_runs_read_event(event: &ClaimedEvent, run: Option<&ActionRunRecord>) -> bool {
    let rewritten = run.map(|r| r.action.as_str());
    event.forced || event.done_runs.iter().any(|r| Some(r.action.as_str()) != rewritten)
}

/// A handler's output, or why the attempt failed.
type Attempt = Result<Value, HandlerError>;

/// The worker slots (`WORKER_CONCURRENCY`) an attempt's handlers run under: the one its
/// task holds, and the pool more come from. Every action run holds a slot while its
/// handler runs, so an event with three actions takes up to three slots at once.
pub struct Slots {
    held: Option<OwnedSemaphorePermit>,
    pool: Option<Arc<Semaphore>>,
}

impl Slots {
    /// The slot `held` by the attempt's task, and the `pool` of the others.
    pub fn new(held: Option<OwnedSemaphorePermit>, pool: Arc<Semaphore>) -> Slots {
        Slots { held, pool: Some(pool) }
    }

    /// No bound (`worker --run-once` handles one event and nothing else).
    pub fn unbounded() -> Slots {
        Slots { held: None, pool: None }
    }
}

/// Where one action goes: the routed action and its handler.
#[derive(Clone, Copy)]
struct Route<'a> {
    action: &'a str,
    mode: HandlerMode,
    target: Option<&'a str>,
    /// The route's flow: its pool pauses when the run meets a rate limit.
    flow: Option<&'a crate::domain::flow::Flow>,
}

/// What an attempt's handlers read: the stored router and payload, and a debounce window.
#[derive(Clone, Copy)]
struct Input<'a> {
    router: &'a Value,
    payload: &'a Value,
    /// `deliver: "all"`: the window's events (CONTRACT §13).
    debounced: Option<&'a Value>,
}

/// How an action run's input and output are stored when it ends `done`.
#[derive(Clone, Copy, PartialEq)]
enum RunTexts {
    /// As the event's ([`run_input::EVENT`]): the one action of an event, whose input and
    /// output the event's payload and result hold.
    Event,
    /// In full: one of several actions, whose output is only a part of the event's result
    /// (and which may be `done` while the event is not).
    Full,
}

/// How the action part of an attempt went.
enum ActionOutcome {
    /// The routed handler ran; its run is to be stored.
    Ran {
        attempt: Attempt,
        run: Box<ActionRunRecord>,
    },
    /// The action already has a `done` run: its stored output is replayed, nothing runs.
    Replayed { output: Value },
    /// No route: the generic runner's answer (`{"note":"no mapping"}` by default).
    Unrouted(Attempt),
    /// Admission held the run (an LLM budget): nothing ran, the attempt is given back.
    Held { reason: String, until: String },
}

impl ActionOutcome {
    /// The handler's answer and the run to store, if any.
    fn into_parts(self) -> (Attempt, Option<ActionRunRecord>) {
        match self {
            ActionOutcome::Ran { attempt, run } => (attempt, Some(*run)),
            ActionOutcome::Replayed { output } => (Ok(output), None),
            ActionOutcome::Unrouted(attempt) => (attempt, None),
            ActionOutcome::Held { reason, .. } => (Err(HandlerError::new(reason)), None),
        }
    }
}

impl Processor {
    /// A processor over `db` with the given handler settings.
    pub fn new(
        db: Db,
        routes: RoutingCache,
        handlers: Arc<HandlerConfig>,
        max_attempts: u32,
        flow: FlowConfig,
    ) -> Processor {
        Processor {
            db,
            routes,
            handlers,
            max_attempts,
            flow,
            cancels: super::cancel::Registry::default(),
            wake: std::sync::OnceLock::new(),
        }
    }

    /// Wakes `wake` (the claim loop's) whenever flow control makes a waiting event due.
    pub fn set_wake(&self, wake: Arc<tokio::sync::Notify>) {
        let _ = self.wake.set(wake);
    }

    /// The store.
    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    /// Re-reads mappings and rules if they changed since the last claim.
    pub async fn refresh_routes(&self) {
        if let Err(e) = self.routes.refresh().await {
            tracing::warn!(error = %e, "could not refresh routing tables; using the previous ones");
        }
    }

    /// Runs one attempt and stores its outcome; never panics on event data.
    pub async fn process(&self, event: ClaimedEvent) {
        if let Some(finish) = self.attempt(&event, Slots::unbounded()).await {
            self.record(finish).await;
        }
    }

    /// Runs one attempt (route, handlers) and says how it ended, without storing it; `None`
    /// when admission held the event (already stored: status `held`, the attempt given back).
    /// The attempt's handlers run under `slots` (one action under the slot its task holds).
    pub async fn attempt(&self, event: &ClaimedEvent, slots: Slots) -> Option<Finish> {
        let started = std::time::Instant::now();
        let mut payload: Value = serde_json::from_str(&event.payload_json).unwrap_or(Value::Null);
        stored_payload::expand_value(&mut payload, event.source);
        let decision = self.routes.route(&payload).await;
        let router = serde_json::to_value(&decision).unwrap_or(Value::Null);
        let runs = flow_gate::runs(event, &decision, &payload);
        let mut input = Input {
            router: &router,
            payload: &payload,
            debounced: None,
        };
        if runs.is_empty() {
            return self.attempt_routed(event, &decision, input, slots, started).await;
        }
        let debounced = self.admit_flow(event, &decision.provider, runs).await?;
        input.debounced = debounced.as_ref();
        let cancel = self.cancels.register(event.id);
        let finish = self.attempt_routed(event, &decision, input, slots, started).await;
        self.cancels.remove(event.id);
        let finish = match (finish, cancel.cancelled_by()) {
            (Some(finish), Some(by)) => {
                self.supersede_cancelled(event, finish, by).await;
                None
            }
            (finish, _) => finish,
        };
        self.release_flow(event.id).await;
        finish
    }

    /// One attempt once flow control let it run.
    async fn attempt_routed(
        &self,
        event: &ClaimedEvent,
        decision: &RouteDecision,
        input: Input<'_>,
        slots: Slots,
        started: std::time::Instant,
    ) -> Option<Finish> {
        if !decision.actions.is_empty() {
            // Held before anything runs when any of its actions would be (a budget).
            if let Some((reason, until)) = self.admit_fan_out(event, decision).await {
                self.hold(event, reason, until).await;
                return None;
            }
            // Boxed: a fan-out's future holds one action's future per action.
            return Some(Box::pin(self.attempt_fan_out(event, decision, input, slots, started)).await);
        }

        let action = match &decision.mapped_action {
            Some(action) => {
                let route = Route {
                    action,
                    mode: decision.handler_mode.unwrap_or(HandlerMode::Noop),
                    target: decision.handler_target.as_deref(),
                    flow: decision.flow.as_deref(),
                };
                let provider = &decision.provider;
                self.run_action(event, provider, route, input, RunTexts::Event).await
            }
            None => ActionOutcome::Unrouted(handlers::run_unrouted(&self.handlers, input.payload, input.router).await),
        };
        if let ActionOutcome::Held { reason, until } = action {
            self.hold(event, reason, until).await;
            return None;
        }
        let replay = matches!(action, ActionOutcome::Replayed { .. });
        let (attempt, action_run) = action.into_parts();

        let failure_kind = attempt
            .as_ref()
            .err()
            .map(|e| e.kind.clone().unwrap_or_else(|| "other".into()));
        let outcome = match attempt {
            Ok(result) => Outcome::Done {
                result_json: stored_result::compact(input.router, &result, replay),
            },
            Err(e) if e.permanent || event.attempt_count >= i64::from(self.max_attempts) => {
                Outcome::Failed { error: e.message }
            }
            Err(e) => Outcome::Retry {
                next_attempt_at: time::timestamp_after(backoff::delay(event.attempt_count, e.retry_after)),
                error: e.message,
            },
        };
        metrics::attempt_finished(outcome.status(), failure_kind.as_deref());
        log_finished(event, decision, &outcome, started.elapsed());
        Some(Finish {
            claim: event.claim_ref(),
            outcome,
            other_runs_read_event: other_runs_read_event(event, action_run.as_ref()),
            action_run,
            provider: Some(decision.provider.clone()),
            action: decision.mapped_action.clone(),
            fan_out: None,
        })
    }

    /// Stores that admission held the event (a lost claim or a store failure is logged:
    /// the lease then expires and the event is tried again).
    async fn hold(&self, event: &ClaimedEvent, reason: String, until: String) {
        tracing::info!(event_id = %escaped(&event.event_id), row_id = event.id, reason = %escaped(&reason), %until, "event held");
        match self.db.hold(event.claim_ref(), reason, until).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(row_id = event.id, "claim was lost before the event could be held"),
            Err(e) => tracing::warn!(row_id = event.id, error = %e, "could not hold the event"),
        }
    }

    /// Stores many outcomes in one store call when it can; an outcome is never given up
    /// while the database may still take it (`super::record`).
    pub async fn record_many(&self, finishes: Vec<Finish>) {
        for (row_id, applied) in super::record::store_outcomes(&self.db, finishes).await {
            if !applied {
                tracing::warn!(row_id, "claim was lost (lease expired) before the outcome was stored");
            }
        }
    }

    /// Stores an attempt's outcome, as [`Processor::record_many`] does.
    pub async fn record(&self, finish: Finish) {
        self.record_many(vec![finish]).await;
    }

    /// Runs the routed action unless a `done` run exists; then replays its stored output.
    async fn run_action(
        &self,
        event: &ClaimedEvent,
        provider: &str,
        route: Route<'_>,
        input: Input<'_>,
        texts: RunTexts,
    ) -> ActionOutcome {
        if let Some(output) = replayed_output(event, route.action) {
            return ActionOutcome::Replayed { output };
        }
        let Route {
            action,
            mode,
            target,
            flow: route_flow,
        } = route;
        let options = match flow::admit(&self.db, &self.flow, event.id, action, mode).await {
            Admission::Run(options) => options,
            Admission::Held { reason, until } => return ActionOutcome::Held { reason, until },
        };
        let Input {
            router,
            payload,
            debounced,
        } = input;
        let input = HandlerInput {
            action,
            router,
            payload,
            debounced,
        };
        // A run that ends `done` stores no input or output: they are the event's (store::run_input).
        let input_json = || serde_json::to_string(&input).unwrap_or_default();
        let mut record = ActionRunRecord {
            event_row_id: event.id,
            started_at: time::now(),
            finished_at: None,
            status: RunStatus::Running,
            provider: provider.to_string(),
            action: action.to_string(),
            handler_mode: mode,
            handler_target: target.map(str::to_string),
            input_json: String::new(),
            output_json: None,
            error: None,
        };
        // noop finishes at once; anything slower gets a visible `running` row first.
        if mode != HandlerMode::Noop {
            record.input_json = input_json();
            if let Err(e) = self.db.start_action_run(record.clone()).await {
                tracing::warn!(row_id = event.id, error = %e, "could not record the start of an action run");
            }
        }
        let started = std::time::Instant::now();
        let run = handlers::run(&self.handlers, mode, target, &input, &options);
        // A cancel drops the handler's future, which kills its process group.
        let ran = match self.cancels.watch(event.id) {
            Some(cancel) => tokio::select! {
                ran = run => Some(ran),
                () = cancel.wait() => None,
            },
            None => Some(run.await),
        };
        metrics::handler_ran(mode, started.elapsed());
        record.finished_at = Some(time::now());
        let Some(ran) = ran else {
            record.input_json = input_json();
            record.status = RunStatus::Cancelled;
            record.error =
                Some("cancelled: a newer event of its key superseded it (on_conflict: cancel_running)".into());
            return ActionOutcome::Ran {
                attempt: Err(HandlerError::permanent("cancelled by flow control").with_kind("cancelled")),
                run: Box::new(record),
            };
        };
        super::usage::record(&self.db, &record, ran.report).await;
        let attempt = ran.answer;
        if let Some(pool) = route_flow.and_then(|f| f.pool.as_deref()) {
            self.after_pooled_run(action, mode, pool, &attempt).await;
        }
        match &attempt {
            Ok(_) if texts == RunTexts::Event => {
                // Both are the event's: its payload and router, its result's `result`.
                record.input_json = run_input::EVENT.to_string();
                record.status = RunStatus::Done;
                record.output_json = Some(run_input::EVENT.to_string());
            }
            Ok(output) => {
                if record.input_json.is_empty() {
                    record.input_json = input_json();
                }
                record.status = RunStatus::Done;
                record.output_json = Some(output.to_string());
            }
            Err(e) => {
                if record.input_json.is_empty() {
                    record.input_json = input_json();
                }
                record.status = RunStatus::Error;
                record.error = Some(e.message.clone());
            }
        }
        ActionOutcome::Ran {
            attempt,
            run: Box::new(record),
        }
    }
}

/// The stored output of `action` when it already ran to `done` for this event.
pub(super) fn replayed_output(event: &ClaimedEvent, action: &str) -> Option<Value> {
    let run = event.done_runs.iter().find(|r| r.action == action)?;
    Some(
        run.output_json
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Source;
    use crate::store::DoneRun;

    fn claimed(done: &[&str], forced: bool) -> ClaimedEvent {
        ClaimedEvent {
            id: 1,
            source: Source::Webhook,
            event_id: "e".into(),
            attempt_count: 2,
            payload_json: "{}".into(),
            done_runs: done
                .iter()
                .map(|a| DoneRun {
                    action: (*a).into(),
                    output_json: None,
                })
                .collect(),
            forced,
        }
    }

    fn run(action: &str) -> ActionRunRecord {
        ActionRunRecord {
            event_row_id: 1,
            started_at: time::now(),
            finished_at: None,
            status: RunStatus::Done,
            provider: "github".into(),
            action: action.into(),
            handler_mode: HandlerMode::Noop,
            handler_target: None,
            input_json: run_input::FROM_EVENT.into(),
            output_json: None,
            error: None,
        }
    }

    #[test]
    fn a_finish_keeps_the_inputs_of_every_done_run_it_does_not_rewrite() {
        // Nothing ran before, or only the run this finish rewrites: nothing to keep.
        assert!(!other_runs_read_event(&claimed(&[], false), Some(&run("a"))));
        assert!(!other_runs_read_event(&claimed(&[], false), None));
        assert!(!other_runs_read_event(&claimed(&["a"], false), Some(&run("a"))));
        // A replayed done run is not rewritten, and its input reads the result this
        // finish replaces; so is a done run of another action.
        assert!(other_runs_read_event(&claimed(&["a"], false), None));
        assert!(other_runs_read_event(&claimed(&["a"], false), Some(&run("b"))));
        // A forced replay did not read its done runs: assume there are some.
        assert!(other_runs_read_event(&claimed(&[], true), Some(&run("a"))));
    }
}
