//! Opening a SQLite file: refusing one that is not a switchyard database, creating a new
//! one privately, migrating it (the options every connection then uses).

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};

use super::migrations::MIGRATIONS;
use crate::store::{StoreError, migrator};

/// Creates the database file readable by its owner only (0600) when it does not exist yet;
/// SQLite gives its `-wal` and `-shm` files the same mode. An existing file is left as is.
fn create_private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Config(format!(
            "cannot create SQLite database {} (APP_DB_PATH): {e}",
            path.display()
        ))),
    }
}

/// Refuses a path that is not a switchyard database (missing file, or no `events` table)
/// without creating anything.
pub(crate) async fn check_existing(path: &Path) -> Result<(), StoreError> {
    let missing = || {
        StoreError::Config(format!(
            "no switchyard database at {} (APP_DB_PATH or --db); point --db at the right file, or create one there with `switchyard db init` (or by running `switchyard serve` there)",
            path.display()
        ))
    };
    if !path.is_file() {
        return Err(missing());
    }
    let options = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut conn = SqliteConnection::connect_with(&options).await.map_err(|e| {
        StoreError::Config(format!(
            "cannot open SQLite database {} (APP_DB_PATH): {e}",
            path.display()
        ))
    })?;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    if tables == 0 {
        return Err(missing());
    }
    Ok(())
}

/// Creates the file (private, with its directories) when missing and migrates it; returns
/// the options every connection to it uses.
pub(crate) async fn prepare(
    path: &Path,
    synchronous: crate::domain::SqliteSynchronous,
) -> Result<SqliteConnectOptions, StoreError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        // Directories created here are private (0700): the database holds every payload.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| {
                StoreError::Config(format!(
                    "cannot create directory {} for APP_DB_PATH: {e}",
                    parent.display()
                ))
            })?;
    }
    create_private_file(path)?;
    let sync = SqliteSynchronous::from_str(synchronous.as_str())
        .map_err(|_| StoreError::Config(format!("invalid SQLITE_SYNCHRONOUS '{synchronous}'")))?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(false)
        .pragma("temp_store", "memory");

    let mut migrate = SqliteConnection::connect_with(&options).await.map_err(|e| {
        StoreError::Config(format!(
            "cannot open SQLite database {} (APP_DB_PATH): {e}",
            path.display()
        ))
    })?;
    // `run_direct`: `run`'s `Acquire` bound would make `store::open`'s future not `Send`.
    migrator(MIGRATIONS)
        .run_direct(None, &mut migrate, false)
        .await
        .map_err(|e| {
            StoreError::Config(format!(
                "cannot migrate SQLite database {} (APP_DB_PATH): {e}",
                path.display()
            ))
        })?;
    ensure_action_run_key(&mut migrate).await?;
    migrate.close().await?;
    Ok(options)
}

/// Makes sure `action_runs` has the unique key on `(event_row_id, action)` that the
/// writer's upsert names. The seed's layout declares it; a file made without
/// it gets an index, and one whose rows already break the rule is refused with the reason.
async fn ensure_action_run_key(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    // A full (not partial) unique index whose columns are exactly these two, in any order.
    let key: Option<String> = sqlx::query_scalar(
        "SELECT il.name FROM pragma_index_list('action_runs') AS il \
         WHERE il.\"unique\" = 1 AND il.partial = 0 \
           AND (SELECT group_concat(name, ',') FROM \
                  (SELECT name FROM pragma_index_info(il.name) ORDER BY name)) = 'action,event_row_id'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if key.is_some() {
        return Ok(());
    }
    sqlx::query("CREATE UNIQUE INDEX action_runs_event_action ON action_runs(event_row_id, action)")
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            StoreError::Config(format!(
                "the table action_runs has no unique key on (event_row_id, action) and one cannot be added \
                 ({e}): it holds more than one run for the same event and action, which switchyard never \
                 writes; keep one row of each such pair and start again"
            ))
        })?;
    tracing::info!("added the missing unique index on action_runs (event_row_id, action)");
    Ok(())
}
