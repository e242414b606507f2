//! JSON views of stored rows shared by the HTTP API and the CLI (neither renders
//! through the other).

use serde_json::{Value, json};

use crate::store::{ActionRunRow, AttemptRow, EventRow};

/// The contract's JSON for an event, its runs and its attempts (`GET /events/{id}` and
/// `events show`).
pub fn event_json(event: &EventRow, runs: &[ActionRunRow], attempts: &[AttemptRow]) -> Value {
    let parse = |s: &Option<String>| -> Value {
        s.as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null)
    };
    let mut ev = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
    if let Some(obj) = ev.as_object_mut() {
        obj.insert("payload".into(), parse(&event.payload_json));
        obj.insert("result".into(), parse(&event.result_json));
    }
    json!({"ok": true, "event": ev, "action_runs": runs, "attempts": attempts})
}
