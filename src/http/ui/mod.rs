//! The operator dashboard at `/ui`: server-rendered pages (maud, escaped by default), one
//! small embedded script, behind a login when `ADMIN_SECRET` is set (`DASHBOARD=0` turns
//! it off). Every state-changing form carries a CSRF token bound to the session.

mod assets;
mod attempts_table;
mod auth;
mod chart;
mod event_page;
mod events_page;
mod form_body;
mod layout;
mod login_throttle;
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
use login_throttle::LoginThrottle;
use session::SessionKey;

/// What dashboard handlers can reach: the API's state plus the session key.
#[derive(Clone)]
pub struct UiState {
    /// The service state shared with the JSON API.
    pub app: AppState,
    /// Signs sessions and CSRF tokens.
    pub key: Arc<SessionKey>,
    /// Failed logins by client.
    pub throttle: Arc<LoginThrottle>,
    /// Cookies carry `Secure` (`PUBLIC_BASE_URL` is `https://…`).
    pub secure_cookies: bool,
}

/// The `/ui` routes (the caller mounts them only when the dashboard is enabled).
pub fn router(app: AppState) -> Router {
    let key = Arc::new(SessionKey::new(app.settings.admin_secret.as_deref()));
    let secure_cookies = app
        .settings
        .providers
        .public_base_url
        .as_deref()
        .is_some_and(|u| u.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")));
    let state = UiState {
        app,
        key,
        throttle: Arc::default(),
        secure_cookies,
    };
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
        .layer(middleware::from_fn_with_state(state.clone(), form_body::read_form))
        .layer(middleware::from_fn(layout::security_headers))
        .layer(DefaultBodyLimit::max(form_body::MAX_FORM_BYTES as usize))
        .with_state(state)
}
