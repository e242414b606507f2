//! JSON views of stored rows shared by the HTTP API and the CLI (neither renders
//! through the other).

use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::Usage;
use crate::store::{ActionRunRow, AttemptRow, EventRow, RunUsage};

/// An action run as shown: the seed's columns plus its `usage` (CONTRACT §14; null for
/// runs that recorded none).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    /// The seed's columns.
    #[serde(flatten)]
    pub row: ActionRunRow,
    /// Cost, tokens, turns, durations, model, session and stop reason of its latest
    /// attempt (agent and llm runs).
    pub usage: Option<Usage>,
    /// Bytes of its stored transcript (`GET /events/{id}/runs/{run_id}/transcript`), if any.
    pub transcript_bytes: Option<i64>,
}

/// Joins an event's runs with their recorded usage (both newest first, by run id).
pub fn runs_with_usage(runs: Vec<ActionRunRow>, usage: &[RunUsage]) -> Vec<RunView> {
    runs.into_iter()
        .map(|row| {
            let u = usage.iter().find(|u| u.run_id == row.id);
            RunView {
                usage: u.and_then(|u| u.usage.clone()),
                transcript_bytes: u.and_then(|u| u.transcript_bytes),
                row,
            }
        })
        .collect()
}

/// The contract's JSON for an event, its runs and its attempts (`GET /events/{id}` and
/// `events show`).
pub fn event_json(event: &EventRow, runs: &[RunView], attempts: &[AttemptRow]) -> Value {
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
