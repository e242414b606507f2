//! The statements of a copy, written for either dialect from a [`Table`].

use super::tables::{Kind, Table};

/// Which SQL a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: `?` parameters.
    Sqlite,
    /// PostgreSQL: `$n` parameters.
    Postgres,
}

/// Most bound values in one INSERT (SQLite allows 32,766, PostgreSQL 65,535).
pub const MAX_PARAMS: usize = 8_000;

fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

fn placeholder(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => "?".to_string(),
        Dialect::Postgres => format!("${n}"),
    }
}

fn key_list(table: &Table) -> String {
    table.key.iter().map(|k| quoted(k)).collect::<Vec<_>>().join(", ")
}

/// One page of `table` in key order, after the key bound to the first parameters when
/// `after` (each value cast to its kind, so a loosely typed SQLite value reads as declared).
pub fn page(dialect: Dialect, table: &Table, after: bool, limit: usize) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let ty = match (c.kind, dialect) {
                (Kind::Int, Dialect::Sqlite) => "INTEGER",
                (Kind::Int, Dialect::Postgres) => "BIGINT",
                (Kind::Real, Dialect::Sqlite) => "REAL",
                (Kind::Real, Dialect::Postgres) => "DOUBLE PRECISION",
                (Kind::Text, _) => "TEXT",
            };
            let value = match dialect {
                Dialect::Postgres if table.name == "events" => claimed_event_column(c.name),
                _ => None,
            };
            format!("CAST({} AS {ty})", value.unwrap_or_else(|| quoted(c.name)))
        })
        .collect();
    let keys = key_list(table);
    let filter = if after {
        let params: Vec<String> = (1..=table.key.len()).map(|n| placeholder(dialect, n)).collect();
        format!(" WHERE ({keys}) > ({})", params.join(", "))
    } else {
        String::new()
    };
    let source = match dialect {
        Dialect::Postgres if table.name == "events" => PG_EVENTS_WITH_CLAIMS.to_owned(),
        _ => quoted(table.name),
    };
    format!(
        "SELECT {} FROM {source}{filter} ORDER BY {keys} LIMIT {limit}",
        columns.join(", ")
    )
}

/// PostgreSQL's events with their claims (migration 0020 keeps a claim in `event_queue`).
const PG_EVENTS_WITH_CLAIMS: &str = "events LEFT JOIN event_queue claim \
     ON claim.event_row_id = events.id AND claim.leased_until IS NOT NULL";

/// Read from PostgreSQL, a claimed event's row as the API shows it and SQLite stores it:
/// `processing`, the claim's attempt, start and lease.
fn claimed_event_column(name: &str) -> Option<String> {
    let value = match name {
        "status" => "CASE WHEN claim.event_row_id IS NOT NULL THEN 'processing' ELSE events.status END",
        "attempt_count" => "COALESCE(claim.attempt, events.attempt_count)",
        "processing_started_at" => "COALESCE(claim.claimed_at, events.processing_started_at)",
        "lease_until" => "COALESCE(NULLIF(claim.leased_until, ''), events.lease_until)",
        _ => return None,
    };
    Some(value.to_owned())
}

/// Inserts `rows` rows, skipping any that collide with a row the target holds (by primary
/// key or another unique key).
pub fn insert(dialect: Dialect, table: &Table, rows: usize) -> String {
    let names: Vec<String> = table.columns.iter().map(|c| quoted(c.name)).collect();
    let width = table.columns.len();
    let tuples: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=width).map(|c| placeholder(dialect, r * width + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {} ({}) VALUES {} ON CONFLICT DO NOTHING",
        quoted(table.name),
        names.join(", "),
        tuples.join(", ")
    )
}

/// Rows per INSERT for `table`.
pub fn rows_per_insert(table: &Table) -> usize {
    (MAX_PARAMS / table.columns.len().max(1)).max(1)
}

/// The row count of `table`.
pub fn count(table: &Table) -> String {
    format!("SELECT COUNT(*) FROM {}", quoted(table.name))
}

/// The column names of a table (the table's name is the first parameter).
pub fn columns(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "SELECT name FROM pragma_table_info(?)",
        Dialect::Postgres => {
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    }
}

/// Moves a PostgreSQL identity column's sequence past the highest id (inserting explicit
/// ids leaves it where it was, and the next generated id would collide).
pub fn fix_sequence(table: &Table, column: &str) -> String {
    format!(
        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
         COALESCE((SELECT MAX({col}) FROM {qt}), 0) + 1, false)",
        table = table.name,
        col = quoted(column),
        qt = quoted(table.name)
    )
}

/// PostgreSQL keeps what claims touch in the narrow `event_queue` (migration 0020), not in
/// the copied `events` rows: queue every copied event that is pending, retrying or
/// processing (a processing one with its claim and lease, which expires and is reclaimed
/// like any other), then put the claimed ones' rows as that layout has them (the status
/// and attempt count from before the claim). The same two steps as the migration; a
/// `--resume` leaves the rows queued before alone.
pub const QUEUE_COPIED: [&str; 2] = [
    "INSERT INTO event_queue (event_row_id, run_at, attempt, claimed_at, leased_until) \
     SELECT id, COALESCE(next_attempt_at, received_at), attempt_count, \
            CASE WHEN status = 'processing' THEN processing_started_at END, \
            CASE WHEN status = 'processing' THEN COALESCE(lease_until, '') END \
     FROM events WHERE status IN ('pending', 'retry', 'processing') \
     ON CONFLICT (event_row_id) DO NOTHING",
    "UPDATE events SET status = CASE WHEN attempt_count > 1 THEN 'retry' ELSE 'pending' END, \
         attempt_count = GREATEST(attempt_count - 1, 0), lease_until = NULL \
     WHERE status = 'processing'",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::copy::tables::TABLES;

    #[test]
    fn statements_number_their_parameters_per_dialect() {
        let meta = TABLES.iter().find(|t| t.name == "switchyard_meta").unwrap();
        assert_eq!(
            page(Dialect::Postgres, meta, true, 10),
            "SELECT CAST(\"key\" AS TEXT), CAST(\"value\" AS BIGINT) FROM \"switchyard_meta\" \
             WHERE (\"key\") > ($1) ORDER BY \"key\" LIMIT 10"
        );
        assert_eq!(
            insert(Dialect::Postgres, meta, 2),
            "INSERT INTO \"switchyard_meta\" (\"key\", \"value\") VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            insert(Dialect::Sqlite, meta, 2),
            "INSERT INTO \"switchyard_meta\" (\"key\", \"value\") VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING"
        );
        assert!(
            TABLES
                .iter()
                .all(|t| rows_per_insert(t) * t.columns.len() <= MAX_PARAMS)
        );
    }
}
