//! `GET /spend`: what agent and `llm` runs cost over a period (CONTRACT §14).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;

use super::{AppState, require_secret};
use crate::error::{ApiError, ErrorReply};
use crate::spend_report::{self, SpendReport};

/// `GET /spend`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SpendQuery {
    /// Start of the period: an age (`7d`, `12h`, `30m`) or an RFC 3339 time; default `7d`.
    since: Option<String>,
    /// `action` (default), `model` or `day`.
    by: Option<String>,
}

/// Cost and tokens of agent and llm runs since a time, by action, model or UTC day.
#[utoipa::path(get, path = "/spend", tag = "operator",
    params(SpendQuery),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "The spend of the period", body = SpendReport),
        (status = 400, description = "since or by is not understood", body = ErrorReply),
        (status = 401, description = "X-Admin-Secret missing or wrong", body = ErrorReply),
        (status = 403, description = "ADMIN_SECRET is unset and Host is neither loopback nor in ALLOWED_HOSTS", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn show(
    State(state): State<AppState>,
    Query(q): Query<SpendQuery>,
    headers: HeaderMap,
) -> Result<Json<SpendReport>, ApiError> {
    require_secret(state.settings.admin_secret.as_deref(), &headers, "x-admin-secret")?;
    let since = spend_report::parse_since(q.since.as_deref().unwrap_or(spend_report::DEFAULT_SINCE))
        .map_err(ApiError::BadRequest)?;
    let (by, word) = spend_report::parse_by(q.by.as_deref().unwrap_or("action")).map_err(ApiError::BadRequest)?;
    Ok(Json(spend_report::report(&state.db, since, by, word).await?))
}
