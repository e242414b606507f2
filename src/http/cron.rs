//! `POST /cron/enqueue?job=NAME`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::ingest::enqueue_reply;
use super::{AppState, require_secret};
use crate::cron;
use crate::error::ApiError;

/// Query of `/cron/enqueue`.
#[derive(Deserialize)]
pub struct CronQuery {
    job: Option<String>,
}

/// Enqueues a cron event for the current second; the same tick is never queued twice.
pub async fn enqueue(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CronQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let s = &state.settings;
    require_secret(s.ingress_secret.as_deref(), &headers, "x-ingress-secret")?;
    require_secret(s.cron_secret.as_deref(), &headers, "x-cron-secret")?;
    let job = query
        .ok()
        .and_then(|Query(q)| q.job)
        .map(|j| j.trim().to_string())
        .filter(|j| !j.is_empty())
        .ok_or_else(|| ApiError::BadRequest("missing query parameter 'job'".into()))?;
    let event = cron::event_for(&job, chrono::Utc::now());
    let event_id = event.event_id.clone();
    let outcome = state.db.enqueue(event).await?;
    Ok(Json(enqueue_reply(&state, outcome, &event_id)))
}
