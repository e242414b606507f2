//! JSON views of stored rows shared by the HTTP API and the CLI (neither renders
//! through the other).

use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::{EventStatus, Usage};
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

/// What an event waits for, or what ended it, in flow control's words (CONTRACT §13), for
/// people: `events show` and the event page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowNote {
    /// A `waiting` (flow control) or `held` (an LLM budget) event: why, from `last_error`.
    Waiting {
        /// `waiting` or `held`.
        status: EventStatus,
        /// What it waits for.
        reason: String,
    },
    /// A `skipped` or `superseded` event, from its result's `flow` object.
    Ended {
        /// `skipped` or `superseded`.
        status: EventStatus,
        /// The row id of the event that holds its key (skipped) or took its place.
        by: i64,
        /// That event's `event_id`.
        by_event_id: Option<String>,
        /// The action whose flow decided.
        action: Option<String>,
        /// The rendered key (empty: the action's one key).
        key: Option<String>,
    },
}

impl FlowNote {
    /// The note of `e`, if its status has one.
    pub fn of(e: &EventRow) -> Option<FlowNote> {
        match e.status? {
            status @ (EventStatus::Waiting | EventStatus::Held) => Some(FlowNote::Waiting {
                status,
                reason: e.last_error.clone()?,
            }),
            status @ (EventStatus::Skipped | EventStatus::Superseded) => {
                let result: Value = serde_json::from_str(e.result_json.as_deref()?).ok()?;
                let flow = result.get("flow")?;
                let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
                let by = flow.get("by")?;
                Some(FlowNote::Ended {
                    status,
                    by: by.get("row_id")?.as_i64()?,
                    by_event_id: text(by.get("event_id")),
                    action: text(flow.get("action")),
                    key: text(flow.get("key")),
                })
            }
            _ => None,
        }
    }

    /// One line for a terminal, outside text escaped: `waiting: <reason>`, `superseded by
    /// event 12 (event_id …, action 'review', key 'o/r#1')`, `skipped: event 12 (…) holds its key`.
    pub fn line(&self) -> String {
        use crate::escape::escaped;
        match self {
            FlowNote::Waiting { status, reason } => format!("{status}: {}", escaped(reason)),
            FlowNote::Ended {
                status,
                by,
                by_event_id,
                action,
                key,
            } => {
                let mut about = Vec::new();
                if let Some(id) = by_event_id {
                    about.push(format!("event_id {}", escaped(id)));
                }
                if let Some(a) = action {
                    about.push(format!("action '{}'", escaped(a)));
                }
                if let Some(k) = key.as_deref().filter(|k| !k.is_empty()) {
                    about.push(format!("key '{}'", escaped(k)));
                }
                let about = if about.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", about.join(", "))
                };
                match status {
                    EventStatus::Skipped => format!("skipped: event {by}{about} holds its key"),
                    _ => format!("superseded by event {by}{about}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: EventStatus, result: Option<&str>, last_error: Option<&str>) -> EventRow {
        EventRow {
            id: 5,
            source: None,
            event_id: None,
            received_at: None,
            status: Some(status),
            attempt_count: 0,
            next_attempt_at: None,
            processing_started_at: None,
            processed_at: None,
            payload_json: None,
            result_json: result.map(str::to_owned),
            last_error: last_error.map(str::to_owned),
        }
    }

    #[test]
    fn flow_notes_name_the_reason_or_the_event_that_took_the_place() {
        let reason = "flow:concurrency: action 'review' key 'o/r#1': 1 of per_key 1 running (event 12 runs)";
        let w = FlowNote::of(&event(EventStatus::Waiting, None, Some(reason))).unwrap();
        assert_eq!(w.line(), format!("waiting: {reason}"));
        let result =
            crate::store::flow::ended_result(EventStatus::Superseded, "review", "o/r#1\u{1b}[2J", 12, Some("abc"));
        let s = FlowNote::of(&event(EventStatus::Superseded, Some(&result), None)).unwrap();
        assert_eq!(
            s.line(),
            "superseded by event 12 (event_id abc, action 'review', key 'o/r#1\\u{1b}[2J')"
        );
        let result = crate::store::flow::ended_result(EventStatus::Skipped, "triage", "", 7, None);
        let k = FlowNote::of(&event(EventStatus::Skipped, Some(&result), None)).unwrap();
        assert_eq!(k.line(), "skipped: event 7 (action 'triage') holds its key");
        assert_eq!(FlowNote::of(&event(EventStatus::Done, Some(&result), Some("x"))), None);
        assert_eq!(FlowNote::of(&event(EventStatus::Superseded, Some("{}"), None)), None);
    }
}
