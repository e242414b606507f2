//! Prometheus metrics (CONTRACT §10): recorded through the `metrics` facade, exposed by
//! `metrics-exporter-prometheus` at `GET /metrics`. Counts only, never payloads.
//!
//! Queue gauges are sampled by [`sample_loop`] every few seconds from the queue's partial
//! indexes, so a scrape costs no query at all.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::domain::{EventStatus, HandlerMode};
use crate::store::{Db, QueueDepth};

/// Webhooks received, by outcome (`queued`, `duplicate`, or why they were refused).
pub const INGESTED: &str = "switchyard_ingested_total";
/// Events in the queue, by status (`pending`, `retry`, `processing`, `held`, `waiting`).
pub const QUEUE_DEPTH: &str = "switchyard_queue_depth";
/// Seconds the oldest due event has waited (0 when nothing is due).
pub const OLDEST_DUE_AGE: &str = "switchyard_oldest_due_age_seconds";
/// Events claimed by this process's workers.
pub const CLAIMS: &str = "switchyard_claims_total";
/// Attempts finished, by outcome (`done`, `retry`, `error`).
pub const ATTEMPTS: &str = "switchyard_attempts_total";
/// Failed attempts, by kind (`timeout`, `http_429`, … or `other`).
pub const ATTEMPTS_FAILED: &str = "switchyard_attempts_failed_total";
/// Handler run time in seconds, by handler mode.
pub const HANDLER_DURATION: &str = "switchyard_handler_duration_seconds";
/// Runs of the actions of events with several actions (fan-out), by action and outcome
/// (`done` or `error`): which action of a fan-out fails. Events with one action are
/// counted by [`ATTEMPTS`] alone (no per-action label on the one-action path).
pub const FAN_OUT_RUNS: &str = "switchyard_fan_out_action_runs_total";
/// Flow-control decisions (CONTRACT §13), by action and kind (`run`, `wait`, `skip`,
/// `supersede`, `cancel`, `pause`).
pub const FLOW_DECISIONS: &str = "switchyard_flow_decisions_total";

/// How often the queue gauges are refreshed.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// Histogram buckets of handler durations (seconds): from a noop to an agent's minutes.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HANDLER_DURATION.into()), DURATION_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Only an embedding program that installed its own recorder gets here.
            tracing::warn!("a metrics recorder was already installed; /metrics shows only its own output");
        }
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!(INGESTED, "Webhooks received, by outcome.");
    metrics::describe_gauge!(QUEUE_DEPTH, "Events in the queue, by status.");
    metrics::describe_gauge!(OLDEST_DUE_AGE, "Seconds the oldest due event has waited.");
    metrics::describe_counter!(CLAIMS, "Events claimed by this process's workers.");
    metrics::describe_counter!(ATTEMPTS, "Attempts finished, by outcome.");
    metrics::describe_counter!(ATTEMPTS_FAILED, "Failed attempts, by kind.");
    metrics::describe_histogram!(HANDLER_DURATION, "Handler run time in seconds, by handler mode.");
    metrics::describe_counter!(
        FAN_OUT_RUNS,
        "Action runs of events with several actions, by action and outcome."
    );
    metrics::describe_counter!(FLOW_DECISIONS, "Flow-control decisions, by action and kind.");
}

/// Counts one webhook by outcome.
pub fn ingested(outcome: &'static str) {
    metrics::counter!(INGESTED, "outcome" => outcome).increment(1);
}

/// Counts claimed events.
pub fn claimed(n: usize) {
    metrics::counter!(CLAIMS).increment(n as u64);
}

/// Records one handler run.
pub fn handler_ran(mode: HandlerMode, took: Duration) {
    metrics::histogram!(HANDLER_DURATION, "mode" => mode.as_str()).record(took.as_secs_f64());
}

/// Counts one finished attempt (`done`, `retry` or `error`) and, for a failure, its kind.
pub fn attempt_finished(outcome: EventStatus, failure_kind: Option<&str>) {
    metrics::counter!(ATTEMPTS, "outcome" => outcome.as_str()).increment(1);
    if outcome != EventStatus::Done {
        let kind = failure_kind.unwrap_or("other").to_string();
        metrics::counter!(ATTEMPTS_FAILED, "kind" => kind).increment(1);
    }
}

/// Counts one run of one action of a fan-out event (`done` or `error`).
pub fn fan_out_action_ran(action: &str, outcome: crate::domain::RunStatus) {
    metrics::counter!(FAN_OUT_RUNS, "action" => action.to_string(), "outcome" => outcome.as_str()).increment(1);
}

/// Counts one flow-control decision for `action`.
pub fn flow_decision(action: &str, kind: &'static str) {
    metrics::counter!(FLOW_DECISIONS, "action" => action.to_string(), "kind" => kind).increment(1);
}

/// Sets the queue gauges from a sample.
fn record_depth(depth: &QueueDepth) {
    metrics::gauge!(QUEUE_DEPTH, "status" => EventStatus::Pending.as_str()).set(depth.pending as f64);
    metrics::gauge!(QUEUE_DEPTH, "status" => EventStatus::Retry.as_str()).set(depth.retry as f64);
    metrics::gauge!(QUEUE_DEPTH, "status" => EventStatus::Processing.as_str()).set(depth.processing as f64);
    metrics::gauge!(QUEUE_DEPTH, "status" => EventStatus::Held.as_str()).set(depth.held as f64);
    metrics::gauge!(QUEUE_DEPTH, "status" => EventStatus::Waiting.as_str()).set(depth.waiting as f64);
    let age = depth.oldest_due.as_deref().and_then(crate::time::age_seconds);
    metrics::gauge!(OLDEST_DUE_AGE).set(age.unwrap_or(0.0));
}

/// Refreshes the queue gauges (and the exporter's upkeep) every few seconds until `stop`.
pub async fn sample_loop(db: Db, mut stop: watch::Receiver<bool>) {
    let handle = handle();
    loop {
        match db.queue_depth().await {
            Ok(depth) => record_depth(&depth),
            Err(e) => tracing::debug!(error = %e, "could not sample the queue depth"),
        }
        handle.run_upkeep();
        tokio::select! {
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
