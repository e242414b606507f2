//! `GET /events/{row_id}`: an event with its parsed payload, result, action runs and attempts.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{AppState, require_secret};
use crate::error::{ApiError, ErrorReply};
use crate::store::{AttemptRow, EventRow};
use crate::views::RunView;

/// An event with the seed's columns plus its parsed payload and result.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// The seed's columns (`*_json` as strings, for old scripts).
    #[serde(flatten)]
    pub row: EventRow,
    /// `payload_json` parsed (null when absent or not JSON).
    pub payload: Value,
    /// `result_json` parsed (null when absent or not JSON).
    pub result: Value,
}

/// `GET /events/{row_id}`'s reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetail {
    /// Always true.
    pub ok: bool,
    /// The event.
    pub event: EventView,
    /// Its action runs, newest first.
    pub action_runs: Vec<RunView>,
    /// Every attempt ever made, oldest first, kept across replays.
    pub attempts: Vec<AttemptRow>,
}

/// Shows one event with its action runs.
#[utoipa::path(get, path = "/events/{row_id}", tag = "operator",
    params(("row_id" = i64, Path, description = "The event's row id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "The event", body = EventDetail),
        (status = 400, description = "row_id is not an integer", body = ErrorReply),
        (status = 401, description = "X-Admin-Secret missing or wrong", body = ErrorReply),
        (status = 403, description = "ADMIN_SECRET is unset and Host is neither loopback nor in ALLOWED_HOSTS", body = ErrorReply),
        (status = 404, description = "No such event", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn show(
    State(state): State<AppState>,
    Path(row_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<EventDetail>, ApiError> {
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
    let usage = state.db.run_usage(id).await?;
    let runs = crate::views::runs_with_usage(state.db.action_runs(id).await?, &usage);
    let attempts = state.db.attempts(id).await?;
    Ok(Json(event_json(event, runs, attempts)))
}

/// The contract's JSON for an event and its runs (also used by `events show`).
pub fn event_json(event: EventRow, runs: Vec<RunView>, attempts: Vec<AttemptRow>) -> EventDetail {
    let parse = |s: &Option<String>| -> Value {
        s.as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null)
    };
    EventDetail {
        ok: true,
        event: EventView {
            payload: parse(&event.payload_json),
            result: parse(&event.result_json),
            row: event,
        },
        action_runs: runs,
        attempts,
    }
}

/// `GET /events/{row_id}/runs/{run_id}/transcript`: an agent run's JSONL transcript.
#[utoipa::path(get, path = "/events/{row_id}/runs/{run_id}/transcript", tag = "operator",
    params(
        ("row_id" = i64, Path, description = "The event's row id"),
        ("run_id" = i64, Path, description = "The action run's id (`action_runs[].id`)"),
    ),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "The transcript: the Claude Code CLI's stream-json lines, secrets redacted, capped (head and tail kept)", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "An id is not an integer", body = ErrorReply),
        (status = 401, description = "X-Admin-Secret missing or wrong", body = ErrorReply),
        (status = 403, description = "ADMIN_SECRET is unset and Host is neither loopback nor in ALLOWED_HOSTS", body = ErrorReply),
        (status = 404, description = "No such run of this event, or the run has no transcript", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn transcript(
    State(state): State<AppState>,
    Path((row_id, run_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    require_secret(state.settings.admin_secret.as_deref(), &headers, "x-admin-secret")?;
    let id = |what: &str, v: &str| -> Result<i64, ApiError> {
        v.trim()
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("{what} must be an integer, got '{v}'")))
    };
    let (row_id, run_id) = (id("row_id", &row_id)?, id("run_id", &run_id)?);
    match state.db.transcript(row_id, run_id).await? {
        None => Err(ApiError::NotFound(format!("event {row_id} has no action run {run_id}"))),
        Some(None) => Err(ApiError::NotFound(format!("action run {run_id} has no transcript"))),
        Some(Some(text)) => Ok((
            [
                (axum::http::header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8"),
                (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            text,
        )
            .into_response()),
    }
}
