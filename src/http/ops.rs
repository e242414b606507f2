//! The operator API (CONTRACT §10): list, replay, cancel, bulk replay, stats.
//! Every route here requires `X-Admin-Secret` when `ADMIN_SECRET` is set.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{Object, Required};
use utoipa::{IntoParams, ToSchema};

use super::{AppState, require_secret};
use crate::domain::EventStatus;
use crate::error::{ApiError, ErrorReply};
use crate::store::{Cursor, EventFilter, EventSummary, FILTER_KEYS, MAX_FILTER_LEN, STATUSES, Stats, Transition};

/// Default page size of `GET /events`.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size of `GET /events`.
pub const MAX_LIMIT: u32 = 500;

/// A string schema limited to `values` (generated from the same constants the handlers check).
fn string_enum(values: &[&str]) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .build()
}

fn status_schema() -> Object {
    string_enum(STATUSES)
}

fn force_schema() -> Object {
    string_enum(&["0", "1", "false", "true"])
}

/// The filters of the listing and the bulk replay, as documented query parameters; the
/// handlers read them with [`EventFilter::from_pairs`], which checks the same keys.
pub struct FilterParams;

/// What each of [`FILTER_KEYS`] does, in the same order.
const FILTER_DOCS: [&str; 7] = [
    "Only events in this status.",
    "Only events routed to this provider (set by their latest attempt).",
    "Only events routed to this action.",
    "Only events of this source (`webhook` or `cron`).",
    "Received at or after this time (RFC 3339).",
    "Received before this time (RFC 3339).",
    "Text found in `event_id` or `last_error` (ASCII case-insensitive).",
];

impl utoipa::IntoParams for FilterParams {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        filter_params(parameter_in, false)
    }
}

/// The filters of the bulk replay: the same, with `status` required.
pub struct BulkReplayParams;

impl utoipa::IntoParams for BulkReplayParams {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        filter_params(parameter_in, true)
    }
}

/// The documented filter parameters, `status` required or not.
fn filter_params(parameter_in: impl Fn() -> Option<ParameterIn>, status_required: bool) -> Vec<Parameter> {
    FILTER_KEYS
        .iter()
        .zip(FILTER_DOCS)
        .map(|(&key, doc)| {
            let schema = match key {
                "status" => status_schema(),
                "since" | "until" => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .build(),
                _ => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(MAX_FILTER_LEN))
                    .build(),
            };
            let required = key == "status" && status_required;
            ParameterBuilder::new()
                .name(key)
                .parameter_in(parameter_in().unwrap_or_default())
                .required(if required { Required::True } else { Required::False })
                .description(Some(doc))
                .schema(Some(schema))
                .build()
        })
        .collect()
}

/// A query string's filter, answering a malformed one or a bad filter with the contract's JSON 400.
fn filter_of(q: Result<Query<Vec<(String, String)>>, QueryRejection>) -> Result<EventFilter, ApiError> {
    let pairs = query(q)?;
    EventFilter::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(|e| ApiError::BadRequest(e.0))
}

/// Paging of `GET /events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Events per page (1 to 500, default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `?force=1` of a replay.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplayParams {
    /// `1` (or `true`) reruns actions that already ran to `done` instead of reusing their output.
    #[param(schema_with = force_schema)]
    pub force: Option<String>,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListReply {
    /// Always true.
    pub ok: bool,
    /// Newest first, without payload or result bodies.
    pub events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// An event changed state.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionReply {
    /// Always true.
    pub ok: bool,
    /// `queued` (replay) or `cancelled`.
    pub status: String,
    /// The event's row id.
    pub row_id: i64,
}

/// A bulk replay.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkReplayReply {
    /// Always true.
    pub ok: bool,
    /// Always `queued`.
    pub status: String,
    /// How many events were queued again.
    pub count: u64,
}

/// Queue statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsReply {
    /// Always true.
    pub ok: bool,
    /// The figures.
    #[serde(flatten)]
    pub stats: Stats,
}

/// Unwraps a query string, answering a malformed one with the contract's JSON 400.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
}

/// A path's row id.
fn row_id(text: &str) -> Result<i64, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("row_id must be an integer, got '{text}'")))
}

/// Lists events, newest first, with filters and a keyset cursor.
#[utoipa::path(get, path = "/events", tag = "operator",
    params(FilterParams, PageParams),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "A page of events", body = ListReply),
        (status = 400, description = "A filter, limit or cursor is invalid", body = ErrorReply),
        (status = 401, description = "X-Admin-Secret missing or wrong", body = ErrorReply),
        (status = 403, description = "ADMIN_SECRET is unset and Host is neither loopback nor in ALLOWED_HOSTS", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    filter: Result<Query<Vec<(String, String)>>, QueryRejection>,
    page: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<ListReply>, ApiError> {
    require_secret(state.settings.admin_secret.as_deref(), &headers, "x-admin-secret")?;
    let filter = filter_of(filter)?;
    let page = query(page)?;
    let limit = match page.limit.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be an integer from 1 to {MAX_LIMIT}, got '{text}'"))
            })?,
    };
    let cursor = match page.cursor.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            Cursor::decode(text)
                .ok_or_else(|| ApiError::BadRequest("cursor is not a next_cursor this server gave".into()))?,
        ),
    };
    let page = state.db.list_page(filter, cursor, limit).await?;
    Ok(Json(ListReply {
        ok: true,
        events: page.events,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// Why a cancel was refused (the statuses [`EventStatus::CANCELLABLE`] names).
pub const CANCEL_REFUSED: &str = "only pending, retry, held and waiting events can be cancelled";

/// A transition's reply, or the matching error.
fn transition_reply(
    t: Transition,
    row_id: i64,
    status: &str,
    refused: &str,
) -> Result<Json<TransitionReply>, ApiError> {
    match t {
        Transition::Applied => Ok(Json(TransitionReply {
            ok: true,
            status: status.into(),
            row_id,
        })),
        Transition::NotFound => Err(ApiError::NotFound(format!("event {row_id} not found"))),
        Transition::Conflict(current) => Err(ApiError::Conflict(format!("event {row_id} is {current}; {refused}"))),
    }
}

/// Queues an event again with a fresh attempt budget.
#[utoipa::path(post, path = "/events/{row_id}/replay", tag = "operator",
    params(("row_id" = i64, Path, description = "The event's row id"), ReplayParams),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "Queued again", body = TransitionReply),
        (status = 400, description = "row_id or force is invalid", body = ErrorReply),
        (status = 401, description = "X-Admin-Secret missing or wrong", body = ErrorReply),
        (status = 403, description = "ADMIN_SECRET is unset and Host is neither loopback nor in ALLOWED_HOSTS", body = ErrorReply),
        (status = 404, description = "No such event", body = ErrorReply),
        (status = 409, description = "The event is being processed", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    params: Result<Query<ReplayParams>, QueryRejection>,
) -> Result<Json<TransitionReply>, ApiError> {
    require_secret(state.settings.admin_secret.as_deref(), &headers, "x-admin-secret")?;
    let id = row_id(&id)?;
    let force = match query(params)?.force.as_deref().map(str::trim) {
        None | Some("" | "0" | "false") => false,
        Some("1" | "true") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("force must be 1 or 0, got '{other}'"))),
    };
    let t = state.db.replay(id, force).await?;
    if t == Transition::Applied {
        state.wake.notify_one();
    }
    transition_reply(t, id, "queued", "wait for its attempt to finish")
}

/// Cancels a `pending`, `retry`, `held` or `waiting` event: it is never claimed again (a
/// waiting one leaves flow control's lines, CONTRACT §13).
#[utoipa::path(post, path = "/events/{row_id}/cancel", tag = "operator",
    params(("row_id" = i64, Path, description = "The event's row id")),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "Cancelled", body = TransitionReply),
        (status = 400, description = "row_id is not an integer", body = ErrorReply),
        (status = 401, description = "X-Admin-Secret missing or wrong", body = ErrorReply),
        (status = 403, description = "ADMIN_SECRET is unset and Host is neither loopback nor in ALLOWED_HOSTS", body = ErrorReply),
        (status = 404, description = "No such event", body = ErrorReply),
        (status = 409, description = "The event is not pending, retry, held or waiting", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<TransitionReply>, ApiError> {
    require_secret(state.settings.admin_secret.as_deref(), &headers, "x-admin-secret")?;
    let id = row_id(&id)?;
    let t = state.db.cancel(id).await?;
    if t == Transition::Applied {
        // A waiting event it held back in a flow line may be due now.
        state.wake.notify_one();
    }
    transition_reply(t, id, EventStatus::Cancelled.as_str(), CANCEL_REFUSED)
}

/// Replays every event matching the filters (the dead-letter queue: `?status=error`).
#[utoipa::path(post, path = "/events/replay", tag = "operator",
    params(BulkReplayParams),
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "How many events were queued again", body = BulkReplayReply),
        (status = 400, description = "A filter is invalid, or status is missing", body = ErrorReply),
        (status = 401, description = "X-Admin-Secret missing or wrong", body = ErrorReply),
        (status = 403, description = "ADMIN_SECRET is unset and Host is neither loopback nor in ALLOWED_HOSTS", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn replay_bulk(
    State(state): State<AppState>,
    headers: HeaderMap,
    filter: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<BulkReplayReply>, ApiError> {
    require_secret(state.settings.admin_secret.as_deref(), &headers, "x-admin-secret")?;
    let filter = filter_of(filter)?;
    // Replaying "everything" by a forgotten filter would rerun every handler ever run.
    if filter.status.is_none() {
        return Err(ApiError::BadRequest(format!(
            "status is required (one of {}); use status=error for the dead-letter queue",
            STATUSES.join(", ")
        )));
    }
    let count = state.db.replay_matching(filter).await?;
    if count > 0 {
        state.wake.notify_waiters();
        state.wake.notify_one();
    }
    Ok(Json(BulkReplayReply {
        ok: true,
        status: "queued".into(),
        count,
    }))
}

/// Counts by status, the oldest due event's age, and done/failed in the last minute and hour.
#[utoipa::path(get, path = "/stats", tag = "operator",
    security(("admin_secret" = [])),
    responses(
        (status = 200, description = "Queue statistics", body = StatsReply),
        (status = 401, description = "X-Admin-Secret missing or wrong", body = ErrorReply),
        (status = 403, description = "ADMIN_SECRET is unset and Host is neither loopback nor in ALLOWED_HOSTS", body = ErrorReply),
        (status = 503, description = "The database is unavailable", body = ErrorReply),
    ))]
pub async fn stats(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<StatsReply>, ApiError> {
    require_secret(state.settings.admin_secret.as_deref(), &headers, "x-admin-secret")?;
    let stats = state.db.stats().await?;
    Ok(Json(StatsReply { ok: true, stats }))
}
