//! A `done` action run's input and output, stored once.
//!
//! A run that ends `done` in the same attempt as its event stores neither its input
//! (`{"action","router","payload"}`: the payload is the event's, the router is the one in
//! the event's result) nor its output (the event's `result.result`): both are written in
//! the same transaction. `input_json` and `output_json` then hold [`EVENT`], and reads
//! rebuild them from the event, so `GET /events/{id}`, `events show`, the dashboard and the
//! idempotency check see what the handler received and returned. Before a later `done`
//! outcome rewrites the event's result, the finish stores the full input and output of the
//! event's other marked runs (their router and output may differ from the new ones). Rows
//! written with full texts read as they are; the runs of an event with several actions
//! (fan-out) are always written so, since its result holds several outputs and a run may be
//! `done` while its event is not.

use serde_json::Value;

use super::{ActionRunRow, EventRow};

/// A handler's input as the worker serialises it (`handlers::HandlerInput`: same fields,
/// same order; the store does not depend on `handlers`, and the tests compare the two).
#[derive(serde::Serialize)]
struct Input<'a> {
    action: &'a str,
    router: &'a Value,
    payload: &'a Value,
}

/// What `input_json` and `output_json` of a `done` run hold when the text is the event's:
/// empty, which no stored input or output is (the worker stores JSON).
pub const EVENT: &str = "";

/// The input marker of runs written before outputs were stored once (still read).
pub const FROM_EVENT: &str = r#"{"input":"event"}"#;

/// Whether an `input_json` is the event's.
pub fn input_is_event(input_json: Option<&str>) -> bool {
    matches!(input_json, Some(EVENT | FROM_EVENT))
}

/// Whether an `output_json` is the event's.
pub fn output_is_event(output_json: Option<&str>) -> bool {
    output_json == Some(EVENT)
}

/// The input of a run of `action` on `event`, as the worker serialised it.
pub fn rebuild(action: &str, event: &EventRow) -> String {
    input_of(action, event.payload_json.as_deref(), event.result_json.as_deref())
}

/// The input of a run of `action` from its event's payload and result texts (the result
/// as read, i.e. expanded: [`super::stored_result::expand`]).
pub fn input_of(action: &str, payload_json: Option<&str>, result_json: Option<&str>) -> String {
    let payload: Value = payload_json
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or(Value::Null);
    let router = part(result_json, "router");
    let input = Input {
        action,
        router: &router,
        payload: &payload,
    };
    serde_json::to_string(&input).unwrap_or_default()
}

/// The output of the run whose handler's answer is the event's `result.result`, as the
/// worker serialised it.
pub fn output_of(result_json: Option<&str>) -> String {
    part(result_json, "result").to_string()
}

/// One top-level field of a result text (null when absent or unreadable).
fn part(result_json: Option<&str>, key: &str) -> Value {
    result_json
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|mut r| r.get_mut(key).map(Value::take))
        .unwrap_or(Value::Null)
}

/// Whether any run's input or output must be rebuilt from its event.
pub fn needs_event(runs: &[ActionRunRow]) -> bool {
    runs.iter()
        .any(|r| input_is_event(r.input_json.as_deref()) || output_is_event(r.output_json.as_deref()))
}

/// Replaces the markers by the rebuilt input and output.
pub fn resolve(runs: &mut [ActionRunRow], event: Option<&EventRow>) {
    let Some(event) = event else { return };
    for run in runs.iter_mut() {
        if input_is_event(run.input_json.as_deref()) {
            run.input_json = Some(rebuild(run.action.as_deref().unwrap_or_default(), event));
        }
        if output_is_event(run.output_json.as_deref()) {
            run.output_json = Some(output_of(event.result_json.as_deref()));
        }
    }
}
