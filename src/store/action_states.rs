//! The per-action state shown in event listings for events with several actions
//! (fan-out, CONTRACT §12): one query per page, after the page's own.

use serde::Serialize;

use super::EventPage;
use crate::domain::RunStatus;

/// One action of a listed event and where its run stands.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ActionState {
    /// The action.
    pub action: String,
    /// Its run's status (`running`, `done`, `error`).
    pub status: Option<RunStatus>,
}

/// The runs of the listed events, as `(event_row_id, action, status)` in run id order.
pub const SQLITE_SQL: &str = "SELECT event_row_id, action, status FROM action_runs \
     WHERE event_row_id IN (SELECT value FROM json_each(?1)) ORDER BY event_row_id, id";
/// [`SQLITE_SQL`] for PostgreSQL.
pub const POSTGRES_SQL: &str = "SELECT event_row_id, action, status FROM action_runs \
     WHERE event_row_id = ANY($1) ORDER BY event_row_id, id";

/// The row ids of a page, as the JSON array [`SQLITE_SQL`] reads.
pub fn ids_json(page: &EventPage) -> String {
    let ids: Vec<i64> = page.events.iter().map(|e| e.id).collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

/// Sets `actions` on each listed event that has runs of more than one action; an event
/// with one action lists exactly as before.
pub fn attach(page: &mut EventPage, runs: Vec<(i64, Option<String>, Option<String>)>) {
    for event in &mut page.events {
        let states: Vec<ActionState> = runs
            .iter()
            .filter(|(id, _, _)| *id == event.id)
            .map(|(_, action, status)| ActionState {
                action: action.clone().unwrap_or_default(),
                status: status.as_deref().and_then(|s| s.parse().ok()),
            })
            .collect();
        if states.len() > 1 {
            event.actions = Some(states);
        }
    }
}
