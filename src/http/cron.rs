//! `POST /cron/enqueue?job=NAME`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::IntoParams;

use super::enqueued::{IngestReply, enqueue_reply};
use super::{AppState, require_secret};
use crate::cron;
use crate::error::{ApiError, ErrorReply};

/// Query of `/cron/enqueue`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CronQuery {
    /// The job's name (required; surrounding blanks are trimmed, blank is refused).
    #[param(required = true, pattern = r"\S")]
    job: Option<String>,
}

/// Enqueues a cron event for the current second; the same tick is never queued twice.
#[utoipa::path(post, path = "/cron/enqueue", tag = "ingest",
    params(CronQuery),
    security((), ("ingress_secret" = [], "cron_secret" = [])),
    responses(
        (status = 200, description = "Queued, or this second's tick was queued already", body = IngestReply),
        (status = 400, description = "job is missing, or its event id would pass 512 bytes", body = ErrorReply),
        (status = 401, description = "Missing or wrong secret", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn enqueue(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CronQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<IngestReply>, ApiError> {
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
    crate::ingest::event_id::check_len(&event.event_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let event_id = event.event_id.clone();
    let outcome = state.db.enqueue(event).await?;
    Ok(Json(enqueue_reply(&state, outcome, &event_id)))
}
