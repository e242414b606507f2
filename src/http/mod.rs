//! The HTTP API (CONTRACT §2): one router, one module per route group.

pub mod body;
mod cron;
mod enqueued;
pub mod events;
mod health;
pub mod host_check;
mod ingest;
pub mod openapi;
pub mod ops;
pub mod server;
mod source_ingest;
mod spend;
pub mod ui;
mod unverified;

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
        guard_host(ui::router(state.clone()), &state.settings)
    } else {
        Router::new()
    };
    let operator = Router::new()
        .route("/events", get(ops::list))
        .route("/events/replay", post(ops::replay_bulk))
        .route("/events/{row_id}", get(events::show))
        .route("/events/{row_id}/runs/{run_id}/transcript", get(events::transcript))
        .route("/events/{row_id}/replay", post(ops::replay))
        .route("/events/{row_id}/cancel", post(ops::cancel))
        .route("/stats", get(ops::stats))
        .route("/spend", get(spend::show));
    let operator = guard_host(operator, &state.settings);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route("/webhook", post(ingest::webhook))
        .route("/webhook/", post(ingest::webhook))
        .route("/webhook/{hint}", post(ingest::webhook_hint))
        .route("/cron/enqueue", post(cron::enqueue))
        .merge(operator)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .merge(ui)
}

/// The operator routes and `/ui` answer only allowed `Host`s while `ADMIN_SECRET` is unset
/// (DNS rebinding, `host_check`); with it set, the secret guards them.
fn guard_host<S: Clone + Send + Sync + 'static>(routes: Router<S>, settings: &Settings) -> Router<S> {
    if settings.admin_secret.is_some() {
        return routes;
    }
    let allowed = Arc::new(host_check::AllowedHosts::new(&settings.allowed_hosts));
    routes.route_layer(axum::middleware::from_fn_with_state(
        allowed,
        host_check::require_allowed_host,
    ))
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
