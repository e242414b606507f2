//! One connection of a copy, SQLite or PostgreSQL, and what the copy asks of it: a
//! snapshot, pages in key order, batched inserts, counts.

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, ColumnIndex, Connection, Decode, Row, Type};

use super::sql::{self, Dialect};
use super::tables::{Kind, Table};
use super::{CopyOptions, Endpoint};
use crate::store::{StoreError, postgres, sqlite};

/// One value of a row, typed by its column's [`Kind`] (a NULL keeps its column's type,
/// which PostgreSQL needs to accept it).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// An integer column's value.
    Int(Option<i64>),
    /// A real column's value.
    Real(Option<f64>),
    /// A text column's value.
    Text(Option<String>),
}

impl Cell {
    /// Roughly the memory the value holds (to size the next page).
    pub fn bytes(&self) -> usize {
        match self {
            Cell::Text(Some(s)) => s.len() + 24,
            _ => 16,
        }
    }
}

/// An open connection.
pub enum Conn {
    /// A SQLite file.
    Sqlite(SqliteConnection),
    /// A PostgreSQL database.
    Postgres(PgConnection),
}

/// The same code for either connection type (the statements differ only in their text).
macro_rules! either {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            Conn::Sqlite($c) => $body,
            Conn::Postgres($c) => $body,
        }
    };
}

/// Binds each cell as its column's type.
macro_rules! bind_cells {
    ($query:expr, $cells:expr) => {{
        let mut q = $query;
        for cell in $cells {
            q = match cell {
                Cell::Int(v) => q.bind(*v),
                Cell::Real(v) => q.bind(*v),
                Cell::Text(v) => q.bind(v.as_deref()),
            };
        }
        q
    }};
}

impl Conn {
    /// Opens the source: it must exist (nothing is created); it is migrated like every
    /// command migrates the database it opens.
    pub async fn source(from: &Endpoint, options: &CopyOptions) -> Result<Conn, StoreError> {
        match from {
            Endpoint::Sqlite(path) => {
                if !path.is_file() {
                    return Err(StoreError::Config(format!(
                        "{} does not exist (--from)",
                        path.display()
                    )));
                }
                sqlite::check_existing(path).await?;
                Conn::sqlite(path, options).await
            }
            Endpoint::Postgres(url) => Conn::postgres(url, options, true).await,
        }
    }

    /// Opens the target, creating and migrating it when needed.
    pub async fn target(to: &Endpoint, options: &CopyOptions) -> Result<Conn, StoreError> {
        match to {
            Endpoint::Sqlite(path) => Conn::sqlite(path, options).await,
            Endpoint::Postgres(url) => Conn::postgres(url, options, false).await,
        }
    }

    async fn sqlite(path: &std::path::Path, options: &CopyOptions) -> Result<Conn, StoreError> {
        let connect = sqlite::prepare(path, options.sqlite_synchronous).await?;
        Ok(Conn::Sqlite(SqliteConnection::connect_with(&connect).await?))
    }

    async fn postgres(url: &str, options: &CopyOptions, existing_only: bool) -> Result<Conn, StoreError> {
        let connect = postgres::connect_options(url)?;
        let pg = postgres::PgOptions {
            pool_size: 1,
            statement_timeout: std::time::Duration::ZERO,
            connect_timeout: options.connect_timeout,
            existing_only,
        };
        Ok(Conn::Postgres(postgres::migrated_connection(&connect, &pg).await?))
    }

    /// The SQL this connection speaks.
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    async fn execute(&mut self, statement: &str) -> Result<(), StoreError> {
        let statement = AssertSqlSafe(statement.to_string());
        either!(self, c => sqlx::query(statement).execute(&mut *c).await.map(|_| ()))?;
        Ok(())
    }

    /// Starts the read transaction every later read of the source sees as of now: a WAL
    /// reader on SQLite (a `serve` writing the file meanwhile is not seen), a repeatable-read
    /// snapshot on PostgreSQL.
    pub async fn begin_snapshot(&mut self) -> Result<(), StoreError> {
        match self.dialect() {
            Dialect::Sqlite => self.execute("BEGIN DEFERRED").await,
            Dialect::Postgres => self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await,
        }
    }

    /// Ends the snapshot.
    pub async fn end_snapshot(&mut self) -> Result<(), StoreError> {
        self.execute("COMMIT").await
    }

    /// The names of a table's columns (empty when there is no such table).
    pub async fn columns(&mut self, table: &str) -> Result<Vec<String>, StoreError> {
        let statement = sql::columns(self.dialect());
        Ok(either!(self, c => sqlx::query_scalar(statement).bind(table).fetch_all(&mut *c).await)?)
    }

    /// The row count of `table`.
    pub async fn count(&mut self, table: &Table) -> Result<u64, StoreError> {
        let statement = AssertSqlSafe(sql::count(table));
        let n: i64 = either!(self, c => sqlx::query_scalar(statement).fetch_one(&mut *c).await)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Up to `limit` rows of `table` after the key `after`, in key order.
    pub async fn page(
        &mut self,
        table: &Table,
        after: Option<&[Cell]>,
        limit: usize,
    ) -> Result<Vec<Vec<Cell>>, StoreError> {
        let statement = AssertSqlSafe(sql::page(self.dialect(), table, after.is_some(), limit));
        let after = after.unwrap_or_default();
        let rows = either!(self, c => {
            let rows = bind_cells!(sqlx::query(statement), after).fetch_all(&mut *c).await?;
            rows.iter().map(|r| read_row(r, table)).collect::<Result<Vec<_>, _>>()
        })?;
        Ok(rows)
    }

    /// Inserts `rows` in one transaction; returns how many were new to the target.
    pub async fn insert(&mut self, table: &Table, rows: &[Vec<Cell>]) -> Result<u64, StoreError> {
        let begin = match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        self.execute(begin).await?;
        match self.insert_chunks(table, rows).await {
            Ok(n) => {
                self.execute("COMMIT").await?;
                Ok(n)
            }
            Err(e) => {
                // The error says what went wrong; a failed rollback adds nothing to it.
                let _ = self.execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    async fn insert_chunks(&mut self, table: &Table, rows: &[Vec<Cell>]) -> Result<u64, StoreError> {
        let dialect = self.dialect();
        let mut inserted = 0;
        for chunk in rows.chunks(sql::rows_per_insert(table)) {
            let statement = AssertSqlSafe(sql::insert(dialect, table, chunk.len()));
            let cells = chunk.iter().flatten();
            inserted += either!(self, c => bind_cells!(sqlx::query(statement), cells)
                .execute(&mut *c)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(inserted)
    }

    /// After every table: on a PostgreSQL target, queues the copied events that wait or run
    /// ([`sql::QUEUE_COPIED`]); SQLite keeps its queue in the `events` row itself.
    pub async fn queue_copied_events(&mut self) -> Result<(), StoreError> {
        match self.dialect() {
            Dialect::Postgres => {
                for statement in sql::QUEUE_COPIED {
                    self.execute(statement).await?;
                }
                Ok(())
            }
            Dialect::Sqlite => Ok(()),
        }
    }

    /// After explicit ids went into a PostgreSQL identity column: moves its sequence past them.
    pub async fn fix_sequence(&mut self, table: &Table) -> Result<(), StoreError> {
        match (self.dialect(), table.identity) {
            (Dialect::Postgres, Some(column)) => self.execute(&sql::fix_sequence(table, column)).await,
            // SQLite's AUTOINCREMENT already remembers the largest id inserted.
            _ => Ok(()),
        }
    }
}

/// A row read by [`sql::page`]: its cells in the table's column order.
fn read_row<R>(row: &R, table: &Table) -> Result<Vec<Cell>, sqlx::Error>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'a> Option<i64>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<f64>: Decode<'a, R::Database> + Type<R::Database>,
    for<'a> Option<String>: Decode<'a, R::Database> + Type<R::Database>,
{
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(match c.kind {
                Kind::Int => Cell::Int(row.try_get(i)?),
                Kind::Real => Cell::Real(row.try_get(i)?),
                Kind::Text => Cell::Text(row.try_get(i)?),
            })
        })
        .collect()
}
