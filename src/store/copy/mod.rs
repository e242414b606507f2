//! `switchyard db copy` (CONTRACT §15): every table switchyard owns, from one database to
//! another (SQLite or PostgreSQL, either way), row ids kept, read in pages from one
//! consistent snapshot of the source, so a file `serve` is using can be copied.

mod conn;
mod sql;
mod tables;

use std::path::PathBuf;
use std::time::Duration;

use self::conn::{Cell, Conn};
pub use self::tables::{Column, Kind, NOT_COPIED, TABLES, Table};
use super::StoreError;
use crate::domain::SqliteSynchronous;

/// One side of a copy.
#[derive(Clone)]
pub enum Endpoint {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A `postgres://` URL.
    Postgres(String),
}

impl Endpoint {
    /// A `postgres://` or `postgresql://` URL, a `sqlite:` URL, or else a SQLite file path.
    pub fn parse(text: &str) -> Endpoint {
        let text = text.trim();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Endpoint::Postgres(text.to_string())
        } else {
            Endpoint::Sqlite(PathBuf::from(super::sqlite_path(text)))
        }
    }

    /// For messages: the file, or `postgres://host:port/database` (never the credentials).
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Sqlite(path) => path.display().to_string(),
            Endpoint::Postgres(url) => super::postgres_location(url),
        }
    }
}

/// How to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Copy into a target that already holds events, only the rows it lacks.
    pub resume: bool,
    /// How long to keep trying an unreachable PostgreSQL server.
    pub connect_timeout: Duration,
    /// `synchronous` of a SQLite target.
    pub sqlite_synchronous: SqliteSynchronous,
}

/// One table's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    /// The table.
    pub table: &'static str,
    /// Rows in the source's snapshot.
    pub source: u64,
    /// Rows this copy inserted.
    pub copied: u64,
    /// Rows in the target afterwards.
    pub target: u64,
}

/// Rows of the first page of each table; later pages are sized from the bytes read.
const FIRST_PAGE: usize = 64;
/// Most rows in a page.
const MAX_PAGE: usize = 1_000;
/// The memory a page aims at (a page of huge payloads shrinks to fit, down to one row).
const PAGE_BYTES: usize = 8 << 20;

/// Copies every table of [`TABLES`]; `on_table` hears each as it is done. Refuses a target
/// that holds events unless `resume`. The source is opened first, so a missing file or an
/// unreachable server stops the copy before the target is created.
pub async fn copy(
    from: &Endpoint,
    to: &Endpoint,
    options: &CopyOptions,
    mut on_table: impl FnMut(&TableCount),
) -> Result<Vec<TableCount>, StoreError> {
    if let (Endpoint::Sqlite(a), Endpoint::Sqlite(b)) = (from, to)
        && a.canonicalize().ok().is_some_and(|a| b.canonicalize().ok() == Some(a))
    {
        return Err(StoreError::Config(format!(
            "--from and --to are the same file ({})",
            a.display()
        )));
    }
    let mut source = Conn::source(from, options).await?;
    let mut target = Conn::target(to, options).await?;
    check_columns(&mut source, "source", true).await?;
    check_columns(&mut target, "target", false).await?;
    let events = &TABLES[0];
    let held = target.count(events).await?;
    if held > 0 && !options.resume {
        return Err(StoreError::Config(format!(
            "the target {} already holds {held} events; nothing was copied. Use --resume to copy only the rows \
             it lacks, or copy into an empty database",
            to.describe()
        )));
    }
    source.begin_snapshot().await?;
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let in_source = source.count(table).await?;
        let copied = copy_table(&mut source, &mut target, table).await?;
        target.fix_sequence(table).await?;
        let count = TableCount {
            table: table.name,
            source: in_source,
            copied,
            target: target.count(table).await?,
        };
        on_table(&count);
        counts.push(count);
    }
    source.end_snapshot().await?;
    target.queue_copied_events().await?;
    Ok(counts)
}

/// Every column of [`TABLES`] must exist on this side; on the source, a column the list
/// does not know is refused (copying without it would lose it).
async fn check_columns(conn: &mut Conn, side: &str, strict: bool) -> Result<(), StoreError> {
    for table in TABLES {
        let present = conn.columns(table.name).await?;
        if let Some(c) = table.columns.iter().find(|c| !present.iter().any(|p| p == c.name)) {
            return Err(StoreError::Config(format!(
                "the {side} has no column {}.{}: is it a switchyard database?",
                table.name, c.name
            )));
        }
        if let Some(extra) = present
            .iter()
            .find(|p| strict && !table.columns.iter().any(|c| c.name == p.as_str()))
        {
            return Err(StoreError::Config(format!(
                "the {side}'s table {} has a column {extra} that db copy does not know (a newer switchyard's?); \
                 nothing was copied",
                table.name
            )));
        }
    }
    Ok(())
}

/// Copies one table page by page; returns the rows inserted.
async fn copy_table(source: &mut Conn, target: &mut Conn, table: &Table) -> Result<u64, StoreError> {
    let key: Vec<usize> = table
        .key
        .iter()
        .filter_map(|k| table.columns.iter().position(|c| c.name == *k))
        .collect();
    let mut after: Option<Vec<Cell>> = None;
    let mut limit = FIRST_PAGE;
    let mut copied = 0;
    loop {
        let rows = source.page(table, after.as_deref(), limit).await?;
        let Some(last) = rows.last() else {
            return Ok(copied);
        };
        after = Some(key.iter().map(|&i| last[i].clone()).collect());
        copied += target.insert(table, &rows).await?;
        if rows.len() < limit {
            return Ok(copied);
        }
        let bytes: usize = rows.iter().flatten().map(Cell::bytes).sum();
        let per_row = (bytes / rows.len()).max(1);
        limit = (PAGE_BYTES / per_row).clamp(1, MAX_PAGE);
    }
}
