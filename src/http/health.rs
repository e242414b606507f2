//! Probes and metrics: `GET /healthz`, `GET /readyz`, `GET /metrics` (no authentication;
//! they reveal counts, never payloads).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::error::ErrorReply;

/// How long readiness waits for the database before answering 503.
const READY_TIMEOUT: Duration = Duration::from_millis(1500);

/// `{"ok": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OkReply {
    /// Always true.
    pub ok: bool,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "Alive", body = OkReply)))]
pub async fn healthz() -> Json<OkReply> {
    Json(OkReply { ok: true })
}

/// Readiness: 200 when the database answers within 1.5 s, else 503.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "The database answers", body = OkReply),
        (status = 503, description = "The database does not answer", body = ErrorReply),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let error = match tokio::time::timeout(READY_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => return Json(OkReply { ok: true }).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check: the database failed");
            "database unavailable"
        }
        Err(_) => "database did not answer in time",
    };
    let body = ErrorReply {
        ok: false,
        error: error.into(),
        expected_header: None,
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// Prometheus text exposition of this process's metrics.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    let mut text = crate::metrics::handle().render();
    text.push_str(&crate::llm_metrics::render());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}
