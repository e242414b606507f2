//! `GET /events/{row_id}`: an event with its parsed payload, result and action runs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{AppState, require_secret};
use crate::error::ApiError;
use crate::store::{ActionRunRow, EventRow};

/// Shows one event.
pub async fn show(
    State(state): State<AppState>,
    Path(row_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    require_secret(state.settings.admin_secret.as_deref(), &headers, "x-admin-secret")?;
    let id: i64 = row_id
        .trim()
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("row_id must be an integer, got '{row_id}'")))?;
    let event = state
        .db
        .event(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id} not found")))?;
    let runs = state.db.action_runs(id).await?;
    Ok(Json(event_json(&event, &runs)))
}

/// The contract's JSON for an event and its runs (also used by `events show`).
pub fn event_json(event: &EventRow, runs: &[ActionRunRow]) -> Value {
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
    json!({"ok": true, "event": ev, "action_runs": runs})
}
