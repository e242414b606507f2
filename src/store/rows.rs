//! Row → value mapping shared by both backends (same columns, same decoding).
//!
//! This is the one place where stored text becomes the domain's enums: a word that is
//! not one of an enum's spellings is an error naming the table, the row and the column,
//! never a default.

use std::fmt::Display;
use std::str::FromStr;

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{ActionRunRow, AttemptRow, Cursor, EventRow, EventSummary, StoredSchedule, stored_payload, stored_result};
use crate::domain::flow::Flow;
use crate::domain::{HandlerMode, Mapping, Rule, Schedule, UnknownValue};
use crate::time;

/// The error for a row that cannot be read as stored: names the table, row and column.
pub(crate) fn unreadable(table: &str, row: impl Display, column: &str, why: impl Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("{table} row {row}: column {column}: {why}").into())
}

/// Parses an enumerated column's text (see [`unreadable`] for the error).
pub(crate) fn parse_word<T: FromStr<Err = UnknownValue>>(
    text: &str,
    table: &str,
    row: impl Display,
    column: &str,
) -> Result<T, sqlx::Error> {
    text.parse().map_err(|e| unreadable(table, row, column, e))
}

/// Reads a nullable enumerated column.
fn word<R, T>(r: &R, table: &str, row: impl Display, name: &str) -> Result<Option<T>, sqlx::Error>
where
    R: Row,
    T: FromStr<Err = UnknownValue>,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
{
    text(r, name)?.map(|t| parse_word(&t, table, row, name)).transpose()
}

/// Reads the `handler_mode` of a routing row; the seed's NULL means `noop`.
fn handler_mode<R>(r: &R, table: &str, row: impl Display) -> Result<HandlerMode, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
{
    Ok(word(r, table, row, "handler_mode")?.unwrap_or(HandlerMode::Noop))
}

fn text<R>(r: &R, name: &str) -> Result<Option<String>, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
{
    r.try_get::<Option<String>, _>(name)
}

fn int<R>(r: &R, name: &str) -> Result<Option<i64>, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    r.try_get::<Option<i64>, _>(name)
}

/// Timestamps (seed or ours) as RFC 3339 UTC.
fn ts<R>(r: &R, name: &str) -> Result<Option<String>, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
{
    Ok(text(r, name)?.map(|s| time::normalize(&s)))
}

/// Maps an `events` row (the seed's columns).
pub(crate) fn event<R>(r: &R) -> Result<EventRow, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    let id = int(r, "id")?.unwrap_or_default();
    let source = word(r, "events", id, "source")?;
    let event_id = text(r, "event_id")?;
    let result_json = text(r, "result_json")?.map(|s| stored_result::expand(&s, source, event_id.as_deref()));
    Ok(EventRow {
        id,
        source,
        event_id,
        received_at: ts(r, "received_at")?,
        status: word(r, "events", id, "status")?,
        attempt_count: int(r, "attempt_count")?.unwrap_or(0),
        next_attempt_at: ts(r, "next_attempt_at")?,
        processing_started_at: ts(r, "processing_started_at")?,
        processed_at: ts(r, "processed_at")?,
        payload_json: text(r, "payload_json")?.map(|s| stored_payload::expand(&s, source)),
        result_json,
        last_error: text(r, "last_error")?,
    })
}

/// Maps a listing row ([`super::query::SUMMARY_COLUMNS`]) and the cursor just past it.
pub(crate) fn summary<R>(r: &R) -> Result<(EventSummary, Cursor), sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    let id = int(r, "id")?.unwrap_or_default();
    let cursor = Cursor {
        received_at: text(r, "received_at_raw")?.unwrap_or_default(),
        id,
    };
    let summary = EventSummary {
        id,
        source: word(r, "events", id, "source")?,
        event_id: text(r, "event_id")?,
        received_at: ts(r, "received_at")?,
        status: word(r, "events", id, "status")?,
        attempt_count: int(r, "attempt_count")?.unwrap_or(0),
        next_attempt_at: ts(r, "next_attempt_at")?,
        processing_started_at: ts(r, "processing_started_at")?,
        processed_at: ts(r, "processed_at")?,
        last_error: text(r, "last_error")?,
        provider: text(r, "provider")?,
        action: text(r, "action")?,
        actions: None,
    };
    Ok((summary, cursor))
}

/// A page from up to `limit + 1` listing rows: the extra row only says another page exists.
pub(crate) fn page<R>(rows: &[R], limit: usize) -> Result<super::EventPage, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    let mut events = Vec::with_capacity(limit.min(rows.len()));
    let mut last = None;
    for r in rows.iter().take(limit) {
        let (summary, cursor) = summary(r)?;
        events.push(summary);
        last = Some(cursor);
    }
    let next = if rows.len() > limit { last } else { None };
    Ok(super::EventPage { events, next })
}

/// Maps an `action_runs` row.
pub(crate) fn action_run<R>(r: &R) -> Result<ActionRunRow, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    let id = int(r, "id")?.unwrap_or_default();
    Ok(ActionRunRow {
        id,
        event_row_id: int(r, "event_row_id")?.unwrap_or_default(),
        started_at: ts(r, "started_at")?,
        finished_at: ts(r, "finished_at")?,
        status: word(r, "action_runs", id, "status")?,
        provider: text(r, "provider")?,
        action: text(r, "action")?,
        handler_mode: word(r, "action_runs", id, "handler_mode")?,
        handler_target: text(r, "handler_target")?,
        input_json: text(r, "input_json")?,
        output_json: text(r, "output_json")?,
        error: text(r, "error")?,
        attempts: int(r, "attempts")?.unwrap_or_default(),
    })
}

/// Maps an `event_attempts` row.
pub(crate) fn attempt<R>(r: &R) -> Result<AttemptRow, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    Ok(AttemptRow {
        attempt: int(r, "attempt")?.unwrap_or_default(),
        started_at: ts(r, "started_at")?,
        finished_at: ts(r, "finished_at")?,
        outcome: text(r, "outcome")?.unwrap_or_default(),
        error: text(r, "error")?,
        duration_ms: int(r, "duration_ms")?,
    })
}

/// Maps a `provider_mappings` row.
pub(crate) fn mapping<R>(r: &R) -> Result<Mapping, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    let provider = text(r, "provider")?.unwrap_or_default();
    Ok(Mapping {
        handler_mode: handler_mode(r, "provider_mappings", format_args!("'{provider}'"))?,
        action: text(r, "action")?.unwrap_or_default(),
        handler_target: text(r, "handler_target")?,
        enabled: int(r, "enabled")?.unwrap_or(1) != 0,
        flow: stored_flow(text(r, "flow_json")?, "provider_mappings", format_args!("'{provider}'")),
        provider,
    })
}

/// Maps a `routing_rules` row (its conditions are compiled by the router, which skips a
/// rule whose stored conditions no longer parse).
pub(crate) fn rule<R>(r: &R) -> Result<Rule, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    let id = int(r, "id")?.unwrap_or_default();
    Ok(Rule {
        id,
        provider: text(r, "provider")?.unwrap_or_default(),
        name: text(r, "name")?.unwrap_or_default(),
        priority: int(r, "priority")?.unwrap_or(100),
        conditions_json: text(r, "conditions_json")?.unwrap_or_default(),
        action: text(r, "action")?.unwrap_or_default(),
        handler_mode: handler_mode(r, "routing_rules", id)?,
        handler_target: text(r, "handler_target")?,
        enabled: int(r, "enabled")?.unwrap_or(1) != 0,
        continue_after_match: int(r, "continue_after_match")?.unwrap_or(0) != 0,
        flow: stored_flow(text(r, "flow_json")?, "routing_rules", id),
    })
}

/// Reads a `flow_json` column. A stored flow that no longer parses (written by a later
/// version, or edited by hand) is logged and read as none: the route still routes, without
/// flow control, rather than every event of it failing.
fn stored_flow(text: Option<String>, table: &str, row: impl Display) -> Option<Flow> {
    Flow::from_stored(text.as_deref()).unwrap_or_else(|e| {
        tracing::warn!(table, row = %row, error = %e, "a stored flow_json no longer parses; the route runs without flow control");
        None
    })
}

/// A route's `flow_json` column: the flow as [`Flow::to_json`] writes it, NULL without one.
pub(crate) fn flow_json(flow: Option<&Flow>) -> Option<String> {
    flow.map(|f| f.to_json().to_string())
}

/// Maps a `schedules` row.
pub(crate) fn schedule<R>(r: &R) -> Result<StoredSchedule, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    let job = text(r, "job")?.unwrap_or_default();
    let missed = word(r, "schedules", &job, "missed")?.unwrap_or_default();
    Ok(StoredSchedule {
        schedule: Schedule {
            cron: text(r, "cron")?.unwrap_or_default(),
            timezone: text(r, "timezone")?.unwrap_or_else(|| "UTC".into()),
            payload_json: text(r, "payload_json")?.unwrap_or_else(|| "{}".into()),
            enabled: int(r, "enabled")?.unwrap_or(1) != 0,
            missed,
            job,
        },
        last_scheduled_at: text(r, "last_scheduled_at")?,
        active_since: text(r, "active_since")?,
    })
}
