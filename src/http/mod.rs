//! The HTTP API (CONTRACT §2): one router, one module per route group.

pub mod body;
mod cron;
pub mod events;
mod health;
mod ingest;
pub mod openapi;
pub mod ops;
pub mod server;
mod source_ingest;
mod spend;
pub mod ui;

pub use crate::views::event_json;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::settings::Settings;
use crate::store::Db;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The queue.
    pub db: Db,
    /// Settings (secrets, limits).
    pub settings: Arc<Settings>,
    /// Wakes this process's workers when an event is queued.
    pub wake: Arc<Notify>,
    /// Paths verified by a provider's signature (CONTRACT §8).
    pub sources: Arc<crate::ingest::sources::Sources>,
}

/// Builds the router of the whole API.
pub fn router(state: AppState) -> Router {
    let ui = if state.settings.dashboard {
        ui::router(state.clone())
    } else {
        Router::new()
    };
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route("/webhook", post(ingest::webhook))
        .route("/webhook/", post(ingest::webhook))
        .route("/webhook/{hint}", post(ingest::webhook_hint))
        .route("/cron/enqueue", post(cron::enqueue))
        .route("/events", get(ops::list))
        .route("/events/replay", post(ops::replay_bulk))
        .route("/events/{row_id}", get(events::show))
        .route("/events/{row_id}/runs/{run_id}/transcript", get(events::transcript))
        .route("/events/{row_id}/replay", post(ops::replay))
        .route("/events/{row_id}/cancel", post(ops::cancel))
        .route("/stats", get(ops::stats))
        .route("/spend", get(spend::show))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .merge(ui)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("not found".into())
}

async fn method_not_allowed() -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::json!({"ok": false, "error": "method not allowed"});
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// Checks an optional shared secret carried in `header`.
fn require_secret(
    expected: Option<&str>,
    headers: &axum::http::HeaderMap,
    header: &'static str,
) -> Result<(), ApiError> {
    match expected {
        None => Ok(()),
        Some(secret) => {
            let given = headers.get(header).and_then(|v| v.to_str().ok());
            if crate::ingest::signature::secret_matches(secret, given) {
                Ok(())
            } else {
                Err(ApiError::Unauthorized(header))
            }
        }
    }
}
