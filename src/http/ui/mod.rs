//! The operator dashboard at `/ui`: server-rendered pages (maud, escaped by default), one
//! small embedded script, behind a login when `ADMIN_SECRET` is set (`DASHBOARD=0` turns
//! it off). Every state-changing form carries a CSRF token bound to the session.

mod assets;
mod auth;
mod chart;
mod event_page;
mod events_page;
mod layout;
mod overview_page;
mod routing_page;
mod schedules_page;
mod session;
mod spend_page;
mod timeline;
mod try_route;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use super::AppState;
use session::SessionKey;

/// What dashboard handlers can reach: the API's state plus the session key.
#[derive(Clone)]
pub struct UiState {
    /// The service state shared with the JSON API.
    pub app: AppState,
    /// Signs sessions and CSRF tokens.
    pub key: Arc<SessionKey>,
}

/// The `/ui` routes (the caller mounts them only when the dashboard is enabled).
pub fn router(app: AppState) -> Router {
    let key = Arc::new(SessionKey::new(app.settings.admin_secret.as_deref()));
    // A pasted "try it" payload may be as large as a webhook, URL-encoded (up to 3x).
    let body_limit = usize::try_from(app.settings.max_body_bytes.saturating_mul(3))
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let state = UiState { app, key };
    let pages = Router::new()
        .route("/ui", get(|| async { auth::see_other("/ui/overview") }))
        .route("/ui/", get(|| async { auth::see_other("/ui/overview") }))
        .route("/ui/overview", get(overview_page::show))
        .route("/ui/events", get(events_page::list))
        .route("/ui/events/{id}", get(event_page::show))
        .route("/ui/events/{id}/runs/{run_id}", get(event_page::run_timeline))
        .route("/ui/events/{id}/replay", post(event_page::replay))
        .route("/ui/events/{id}/cancel", post(event_page::cancel))
        .route("/ui/routing", get(routing_page::show))
        .route("/ui/routing/try", post(routing_page::try_it))
        .route("/ui/schedules", get(schedules_page::show))
        .route("/ui/spend", get(spend_page::show))
        .route("/ui/logout", post(auth::logout))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_session));
    Router::new()
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route("/ui/static/{file}", get(assets::serve))
        .merge(pages)
        .layer(middleware::from_fn(layout::security_headers))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
