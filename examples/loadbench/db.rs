//! Where each phase's data lives and the read-only queries the benchmark makes beside switchyard.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{PgPool, Row, SqlitePool};

use switchyard::settings::Settings;

/// Where one phase's data lives.
#[derive(Clone)]
pub(crate) enum Target {
    Sqlite(PathBuf),
    Postgres { url: String, name: String },
}

impl Target {
    /// Environment that points switchyard at this database.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Target::Sqlite(p) => vec![("APP_DB_PATH", p.display().to_string())],
            Target::Postgres { url, .. } => vec![("DATABASE_URL", url.clone())],
        }
    }

    pub(crate) fn settings(&self) -> Settings {
        let mut s = Settings::defaults();
        match self {
            Target::Sqlite(p) => {
                s.db_path = p.clone();
                s.database_url = None;
            }
            Target::Postgres { url, .. } => s.database_url = Some(url.clone()),
        }
        s
    }
}

/// Replaces the database name of a postgres:// URL.
pub(crate) fn with_database(url: &str, db: &str) -> Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").ok_or_else(|| anyhow!("not a URL: {url}"))? + 3;
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// The URL with its `sslmode` set to `mode` (replacing one it had).
pub(crate) fn with_sslmode(url: &str, mode: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("sslmode="))
        .collect();
    let wanted = format!("sslmode={mode}");
    params.push(&wanted);
    format!("{base}?{}", params.join("&"))
}

/// How a PostgreSQL drain reaches the server: the benchmark drains over both, so a
/// TLS-only slowdown shows beside the plain-text figure (issue 26).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Transport {
    /// `sslmode=disable`.
    Plain,
    /// `sslmode=require`.
    Tls,
}

impl Transport {
    pub(crate) fn sslmode(self) -> &'static str {
        match self {
            Transport::Plain => "disable",
            Transport::Tls => "require",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::Tls => "TLS",
        }
    }
}

impl Target {
    /// The same database reached over `transport` (SQLite is unchanged).
    pub(crate) fn over(self, transport: Transport) -> Target {
        match self {
            Target::Postgres { url, name } => Target::Postgres {
                url: with_sslmode(&url, transport.sslmode()),
                name,
            },
            t => t,
        }
    }
}

/// Read-only queries the benchmark makes beside switchyard.
pub(crate) enum Probe {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

impl Probe {
    pub(crate) async fn connect(t: &Target) -> Result<Probe> {
        Ok(match t {
            Target::Sqlite(p) => {
                let opts = SqliteConnectOptions::new().filename(p).create_if_missing(false);
                Probe::Sqlite(
                    sqlx::sqlite::SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(opts)
                        .await?,
                )
            }
            Target::Postgres { url, .. } => Probe::Pg(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(url)
                    .await?,
            ),
        })
    }

    pub(crate) async fn count(&self, sql: &'static str) -> Result<i64> {
        Ok(match self {
            Probe::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await?,
            Probe::Pg(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await?,
        })
    }

    pub(crate) async fn rows(&self) -> Result<i64> {
        self.count("SELECT count(*) FROM events").await
    }

    pub(crate) async fn done(&self) -> Result<i64> {
        self.count("SELECT count(*) FROM events WHERE status = 'done'").await
    }

    /// Whether any event is not finished yet. EXISTS on the partial indexes answers in
    /// microseconds however long the queue is, so polling it does not load the machine.
    pub(crate) async fn unfinished(&self) -> Result<bool> {
        let n = self
            .count(
                "SELECT CAST(CASE WHEN EXISTS(SELECT 1 FROM events WHERE status IN ('pending', 'retry')) \
                 OR EXISTS(SELECT 1 FROM events WHERE status = 'processing') \
                 OR EXISTS(SELECT 1 FROM events WHERE status = 'waiting') THEN 1 ELSE 0 END AS BIGINT)",
            )
            .await?;
        Ok(n > 0)
    }

    /// Status and processed_at of one event.
    pub(crate) async fn status(&self, id: i64) -> Result<(String, Option<String>)> {
        let row = match self {
            Probe::Sqlite(p) => {
                let r = sqlx::query("SELECT status, processed_at FROM events WHERE id = ?")
                    .bind(id)
                    .fetch_one(p)
                    .await?;
                (r.try_get(0)?, r.try_get(1)?)
            }
            Probe::Pg(p) => {
                let r = sqlx::query("SELECT status, processed_at FROM events WHERE id = $1")
                    .bind(id)
                    .fetch_one(p)
                    .await?;
                (r.try_get(0)?, r.try_get(1)?)
            }
        };
        Ok(row)
    }

    /// First claim and last finish, as stamped by switchyard.
    pub(crate) async fn busy_window(&self) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
        let sql = "SELECT min(processing_started_at), max(processed_at) FROM events";
        let (a, b): (Option<String>, Option<String>) = match self {
            Probe::Sqlite(p) => {
                let r = sqlx::query(sql).fetch_one(p).await?;
                (r.try_get(0)?, r.try_get(1)?)
            }
            Probe::Pg(p) => {
                let r = sqlx::query(sql).fetch_one(p).await?;
                (r.try_get(0)?, r.try_get(1)?)
            }
        };
        Ok((parse_ts(a.as_deref())?, parse_ts(b.as_deref())?))
    }

    pub(crate) async fn close(self) {
        match self {
            Probe::Sqlite(p) => p.close().await,
            Probe::Pg(p) => p.close().await,
        }
    }
}

pub(crate) fn parse_ts(s: Option<&str>) -> Result<DateTime<Utc>> {
    let s = s.ok_or_else(|| anyhow!("missing timestamp"))?;
    Ok(DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("bad timestamp {s:?}"))?
        .with_timezone(&Utc))
}
