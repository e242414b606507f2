//! `GET /events/{row_id}`: an event with its parsed payload, result and action runs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::Value;

use super::{AppState, require_secret};
use crate::error::ApiError;
use crate::views::event_json;

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
