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
            format!("CAST({} AS {ty})", quoted(c.name))
        })
        .collect();
    let keys = key_list(table);
    let filter = if after {
        let params: Vec<String> = (1..=table.key.len()).map(|n| placeholder(dialect, n)).collect();
        format!(" WHERE ({keys}) > ({})", params.join(", "))
    } else {
        String::new()
    };
    format!(
        "SELECT {} FROM {}{filter} ORDER BY {keys} LIMIT {limit}",
        columns.join(", "),
        quoted(table.name)
    )
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
