//! Reads on the sqlx pool: events, runs, attempts, pages, counts and routing tables. WAL
//! lets them run beside the writer thread.

use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Row};

use super::finished_rows;
use crate::domain::EventStatus;
use crate::store::counts::{self, COUNT_NOT_DONE, COUNT_QUEUED};
use crate::store::query::{self, Dialect};
use crate::store::*;
use crate::store::{action_states, rows};

/// `done` events (`events_finished`).
pub(super) const COUNT_DONE: &str = concat!(
    "SELECT COUNT(*) FROM events WHERE ",
    finished_rows!(),
    " AND status = 'done'"
);

/// Events of a status (`?1`) finished since `?2`, for `/stats`.
pub(super) const FINISHED_SINCE: &str = concat!(
    "SELECT COUNT(*) FROM events WHERE ",
    finished_rows!(),
    " AND status = ?1 AND processed_at >= ?2"
);

/// The columns of a rule, as `rows::rule` reads them.
const RULE_COLUMNS: &str = "SELECT id, provider, name, priority, conditions_json, action, handler_mode, handler_target, enabled, continue_after_match, flow_json FROM routing_rules";
/// The columns of an event, as `rows::event` reads them.
const EVENT_COLUMNS: &str = "SELECT id, source, event_id, received_at, status, attempt_count, next_attempt_at, \
     processing_started_at, processed_at, payload_json, result_json, last_error FROM events";

/// The `next_attempt_at` of the oldest due event (the due index's first entry).
async fn oldest_due(pool: &SqlitePool) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM events INDEXED BY events_due WHERE status IN ('pending', 'retry') AND next_attempt_at <= ?1",
    )
    .bind(crate::time::now())
    .fetch_one(pool)
    .await?)
}

/// The run of `action` on an event, its input and output written out.
pub(super) async fn action_run(
    pool: &SqlitePool,
    event_row_id: i64,
    action: &str,
) -> Result<Option<ActionRunRow>, StoreError> {
    let row = sqlx::query(
        "SELECT id, event_row_id, started_at, finished_at, status, provider, action, handler_mode, \
         handler_target, input_json, output_json, error, attempts FROM action_runs WHERE event_row_id = ? AND action = ?",
    )
    .bind(event_row_id)
    .bind(action)
    .fetch_optional(pool)
    .await?;
    let mut runs: Vec<ActionRunRow> = row.as_ref().map(rows::action_run).transpose()?.into_iter().collect();
    if run_input::needs_event(&runs) {
        run_input::resolve(&mut runs, event(pool, event_row_id).await?.as_ref());
    }
    Ok(runs.pop())
}

/// One event by row id.
pub(super) async fn event(pool: &SqlitePool, row_id: i64) -> Result<Option<EventRow>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!("{EVENT_COLUMNS} WHERE id = ?")))
        .bind(row_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(rows::event).transpose()?)
}

/// An event's action runs, newest first, inputs and outputs written out.
pub(super) async fn action_runs(pool: &SqlitePool, event_row_id: i64) -> Result<Vec<ActionRunRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, event_row_id, started_at, finished_at, status, provider, action, handler_mode, \
         handler_target, input_json, output_json, error, attempts FROM action_runs WHERE event_row_id = ? ORDER BY id DESC",
    )
    .bind(event_row_id)
    .fetch_all(pool)
    .await?;
    let mut runs = rows.iter().map(rows::action_run).collect::<Result<Vec<_>, _>>()?;
    if run_input::needs_event(&runs) {
        run_input::resolve(&mut runs, event(pool, event_row_id).await?.as_ref());
    }
    Ok(runs)
}

/// An event's attempts, oldest first.
pub(super) async fn attempts(pool: &SqlitePool, event_row_id: i64) -> Result<Vec<AttemptRow>, StoreError> {
    let rows = sqlx::query(crate::store::attempts::SELECT_BY_EVENT)
        .bind(event_row_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(rows::attempt).collect::<Result<Vec<_>, _>>()?)
}

/// A page of events (newest first) with their actions' states.
pub(super) async fn list_page(
    pool: &SqlitePool,
    filter: EventFilter,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<EventPage, StoreError> {
    let (sql, c) = query::page_sql(Dialect::Sqlite, &filter, cursor.as_ref());
    let q = query::bind_all(sqlx::query(AssertSqlSafe(sql)), &c.binds).bind(i64::from(limit) + 1);
    let rows = q.fetch_all(pool).await?;
    let mut page = rows::page(&rows, limit as usize)?;
    if !page.events.is_empty() {
        let runs = sqlx::query_as(action_states::SQLITE_SQL)
            .bind(action_states::ids_json(&page))
            .fetch_all(pool)
            .await?;
        action_states::attach(&mut page, runs);
    }
    Ok(page)
}

/// Counts by status, the oldest due event's age and the finish rates of `/stats`.
pub(super) async fn stats(pool: &SqlitePool) -> Result<Stats, StoreError> {
    let mut stats = Stats::default();
    for status in query::STATUSES {
        stats.by_status.insert((*status).to_string(), 0);
    }
    // Two reads, each on its index: the status index holds no `done` rows.
    let counts = sqlx::query(COUNT_NOT_DONE).fetch_all(pool).await?;
    for r in &counts {
        let status: Option<String> = r.try_get("status")?;
        stats.by_status.insert(status.unwrap_or_default(), r.try_get("n")?);
    }
    let done: i64 = sqlx::query_scalar(COUNT_DONE).fetch_one(pool).await?;
    stats.by_status.insert(EventStatus::Done.as_str().to_string(), done);
    stats.oldest_due_age_seconds = oldest_due(pool).await?.as_deref().and_then(crate::time::age_seconds);
    let rate = |status: EventStatus, since: String| async move {
        sqlx::query_scalar::<_, i64>(FINISHED_SINCE)
            .bind(status.as_str())
            .bind(since)
            .fetch_one(pool)
            .await
    };
    counts::fill_rates(&mut stats, rate).await?;
    Ok(stats)
}

/// Waiting events by status and the oldest due time.
pub(super) async fn queue_depth(pool: &SqlitePool) -> Result<QueueDepth, StoreError> {
    let rows = sqlx::query(COUNT_QUEUED).fetch_all(pool).await?;
    let mut depth = QueueDepth::default();
    for r in &rows {
        depth.set(&r.try_get::<String, _>("status")?, r.try_get("n")?);
    }
    depth.oldest_due = oldest_due(pool).await?;
    Ok(depth)
}

/// Every rule and mapping.
pub(super) async fn routing_tables(pool: &SqlitePool) -> Result<RoutingTables, StoreError> {
    let rules = sqlx::query(RULE_COLUMNS).fetch_all(pool).await?;
    let mappings =
        sqlx::query("SELECT provider, action, handler_mode, handler_target, enabled, flow_json FROM provider_mappings")
            .fetch_all(pool)
            .await?;
    Ok(RoutingTables {
        rules: rules.iter().map(rows::rule).collect::<Result<_, _>>()?,
        mappings: mappings.iter().map(rows::mapping).collect::<Result<_, _>>()?,
    })
}

/// One provider's mapping.
pub(super) async fn mapping(pool: &SqlitePool, provider: &str) -> Result<Option<Mapping>, StoreError> {
    let row = sqlx::query(
        "SELECT provider, action, handler_mode, handler_target, enabled, flow_json FROM provider_mappings WHERE provider = ?",
    )
    .bind(provider)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(rows::mapping).transpose()?)
}

/// One provider's rules in evaluation order.
pub(super) async fn rules(pool: &SqlitePool, provider: &str) -> Result<Vec<Rule>, StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{RULE_COLUMNS} WHERE provider = ? ORDER BY priority, id"
    )))
    .bind(provider)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(rows::rule).collect::<Result<_, _>>()?)
}
