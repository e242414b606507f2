//! Row → value mapping shared by both backends (same columns, same decoding).

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{ActionRunRow, EventRow};
use crate::routing::{Condition, Mapping, Rule};
use crate::time;

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
    Ok(EventRow {
        id: int(r, "id")?.unwrap_or_default(),
        source: text(r, "source")?,
        event_id: text(r, "event_id")?,
        received_at: ts(r, "received_at")?,
        status: text(r, "status")?,
        attempt_count: int(r, "attempt_count")?.unwrap_or(0),
        next_attempt_at: ts(r, "next_attempt_at")?,
        processing_started_at: ts(r, "processing_started_at")?,
        processed_at: ts(r, "processed_at")?,
        payload_json: text(r, "payload_json")?,
        result_json: text(r, "result_json")?,
        last_error: text(r, "last_error")?,
    })
}

/// Maps an `action_runs` row.
pub(crate) fn action_run<R>(r: &R) -> Result<ActionRunRow, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    Ok(ActionRunRow {
        id: int(r, "id")?.unwrap_or_default(),
        event_row_id: int(r, "event_row_id")?.unwrap_or_default(),
        started_at: ts(r, "started_at")?,
        finished_at: ts(r, "finished_at")?,
        status: text(r, "status")?,
        provider: text(r, "provider")?,
        action: text(r, "action")?,
        handler_mode: text(r, "handler_mode")?,
        handler_target: text(r, "handler_target")?,
        input_json: text(r, "input_json")?,
        output_json: text(r, "output_json")?,
        error: text(r, "error")?,
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
    Ok(Mapping {
        provider: text(r, "provider")?.unwrap_or_default(),
        action: text(r, "action")?.unwrap_or_default(),
        handler_mode: text(r, "handler_mode")?.unwrap_or_else(|| "noop".into()),
        handler_target: text(r, "handler_target")?,
        enabled: int(r, "enabled")?.unwrap_or(1) != 0,
    })
}

/// Maps a `routing_rules` row; a row whose stored conditions no longer parse (edited by
/// hand) is skipped with a warning rather than failing every event.
pub(crate) fn rule<R>(r: &R) -> Result<Option<Rule>, sqlx::Error>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
{
    let name = text(r, "name")?.unwrap_or_default();
    let provider = text(r, "provider")?.unwrap_or_default();
    let source = text(r, "conditions_json")?.unwrap_or_default();
    let conditions = match Condition::parse_str(&source) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(provider, rule = name, error = %e, "skipping stored rule with invalid conditions");
            return Ok(None);
        }
    };
    Ok(Some(Rule {
        id: int(r, "id")?.unwrap_or_default(),
        provider,
        name,
        priority: int(r, "priority")?.unwrap_or(100),
        conditions,
        conditions_json: serde_json::from_str(&source).unwrap_or_default(),
        action: text(r, "action")?.unwrap_or_default(),
        handler_mode: text(r, "handler_mode")?.unwrap_or_else(|| "noop".into()),
        handler_target: text(r, "handler_target")?,
        enabled: int(r, "enabled")?.unwrap_or(1) != 0,
    }))
}
