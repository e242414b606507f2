//! An action run's input, stored once.
//!
//! A run that ends `done` does not store its input (`{"action","router","payload"}`): the
//! payload is the event's and the router is the one in the event's result, written in the
//! same transaction. `input_json` then holds [`FROM_EVENT`] and reads rebuild the input
//! from the event, so `GET /events/{id}`, `events show` and the dashboard show what the
//! handler received. Before a later `done` outcome rewrites the event's result, the
//! finish stores the full input of the event's other marked runs (their router may
//! differ from the new one). Rows written with a full input read as they are.

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

/// What `input_json` holds when the input is the event's (never a handler input: those
/// always have `action`, `router` and `payload`).
pub const FROM_EVENT: &str = r#"{"input":"event"}"#;

/// The input of a run of `action` on `event`, as the worker serialised it.
pub fn rebuild(action: &str, event: &EventRow) -> String {
    let payload: Value = event
        .payload_json
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or(Value::Null);
    let router = event
        .result_json
        .as_deref()
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .and_then(|mut r| r.get_mut("router").map(Value::take))
        .unwrap_or(Value::Null);
    let input = Input {
        action,
        router: &router,
        payload: &payload,
    };
    serde_json::to_string(&input).unwrap_or_default()
}

/// Whether any run's input must be rebuilt from its event.
pub fn needs_event(runs: &[ActionRunRow]) -> bool {
    runs.iter().any(|r| r.input_json.as_deref() == Some(FROM_EVENT))
}

/// Replaces [`FROM_EVENT`] markers by the rebuilt input.
pub fn resolve(runs: &mut [ActionRunRow], event: Option<&EventRow>) {
    let Some(event) = event else { return };
    for run in runs.iter_mut().filter(|r| r.input_json.as_deref() == Some(FROM_EVENT)) {
        run.input_json = Some(rebuild(run.action.as_deref().unwrap_or_default(), event));
    }
}
