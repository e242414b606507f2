//! Purge under ingest (issue 15, acceptance 6): a fresh database holds `--rows` `done`
//! events finished long ago; `switchyard http` takes wrk's load (bench/ingest.lua) twice,
//! once alone and once while `switchyard events purge --older-than 1d --status done` deletes
//! those rows; the ingest p99 and max latency of both runs and the purge's duration are
//! printed. Target: the purge adds at most 50 ms to the p99.
//!
//! SQLite by default (a temp file); with `--database-url` a fresh PostgreSQL database is
//! created on that server for the run and dropped after (the URL's role needs CREATEDB).
//! Build in release: `cargo build --release --bin switchyard --example purgebench`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use sqlx::{AssertSqlSafe, Connection};
use tokio::process::{Child, Command};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "switchyard purge-under-ingest benchmark (see docs/PERFORMANCE.md)")]
struct Args {
    /// PostgreSQL server to run on (a fresh database is created there and dropped after).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The switchyard binary (release build).
    #[arg(long, default_value = "target/release/switchyard")]
    bin: PathBuf,
    /// The wrk Lua script.
    #[arg(long, default_value = "bench/ingest.lua")]
    lua: PathBuf,
    /// Old `done` events to purge.
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
    /// Seconds of each wrk run (the purge must finish inside the second one).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Largest p99 increase the purge may cause, in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    target_ms: f64,
}

/// The line bench/ingest.lua prints when wrk finishes.
#[derive(Debug, Clone, Copy)]
struct Latency {
    completed: u64,
    non2xx: u64,
    rps: f64,
    p99_us: u64,
    max_us: u64,
}

impl Latency {
    fn parse(out: &str) -> Result<Latency> {
        let line = out
            .lines()
            .find(|l| l.starts_with("WRK_RESULT"))
            .ok_or_else(|| anyhow!("wrk printed no WRK_RESULT line:\n{out}"))?;
        let kv: BTreeMap<&str, f64> = line
            .split_whitespace()
            .filter_map(|p| p.split_once('='))
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect();
        let n = |k: &str| kv.get(k).copied().ok_or_else(|| anyhow!("WRK_RESULT lacks {k}"));
        Ok(Latency {
            completed: n("completed")? as u64,
            non2xx: n("non2xx")? as u64,
            rps: n("rps")?,
            p99_us: n("p99_us")? as u64,
            max_us: n("max_us")? as u64,
        })
    }
}

/// Where the events live: a SQLite file or a PostgreSQL database created for this run.
enum Target {
    Sqlite(PathBuf),
    Postgres { server: String, name: String, url: String },
}

impl Target {
    fn env(&self) -> (&'static str, String) {
        match self {
            Target::Sqlite(p) => ("APP_DB_PATH", p.display().to_string()),
            Target::Postgres { url, .. } => ("DATABASE_URL", url.clone()),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "SQLite",
            Target::Postgres { .. } => "PostgreSQL",
        }
    }
}

/// Replaces the database name of a postgres:// URL (keeping any `?options`).
fn with_database(url: &str, db: &str) -> Result<String> {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let host_start = base.find("://").ok_or_else(|| anyhow!("not a URL: {url}"))? + 3;
    let host_end = base[host_start..].find('/').map_or(base.len(), |i| host_start + i);
    Ok(match query {
        Some(q) => format!("{}/{db}?{q}", &base[..host_end]),
        None => format!("{}/{db}", &base[..host_end]),
    })
}

/// A free loopback port.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs a switchyard subcommand against the target to completion.
async fn switchyard(bin: &PathBuf, target: &Target, args: &[&str]) -> Result<std::process::Output> {
    let (k, v) = target.env();
    let out = Command::new(bin)
        .args(args)
        .env(k, v)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "switchyard {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Creates the schema (through switchyard itself) and `rows` old `done` events in one statement.
async fn prefill(a: &Args, target: &Target) -> Result<()> {
    // A purge opens the database as the service does: created and migrated (nothing to delete yet).
    switchyard(&a.bin, target, &["events", "purge", "--older-than", "36500d"]).await?;
    let old = "2020-01-01T00:00:00.000000Z";
    let payload = r#"{"id":"old","note":"an event finished long ago, ready to be purged ........"}"#;
    let insert = |series: &str, id: &str| {
        format!(
            "INSERT INTO events (source, event_id, received_at, status, attempt_count, next_attempt_at, \
             processed_at, payload_json, result_json) \
             SELECT 'webhook', 'old-' || {id}, '{old}', 'done', 1, '{old}', '{old}', '{payload}', '{{\"ok\":true}}' \
             FROM {series}"
        )
    };
    let started = Instant::now();
    match target {
        Target::Sqlite(path) => {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
            let series = format!(
                "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {}) SELECT i FROM n)",
                a.rows
            );
            sqlx::query(AssertSqlSafe(insert(&series, "i"))).execute(&mut c).await?;
        }
        Target::Postgres { url, .. } => {
            let mut c = sqlx::PgConnection::connect(url).await?;
            let series = format!("generate_series(1, {}) AS n(i)", a.rows);
            sqlx::query(AssertSqlSafe(insert(&series, "i::text")))
                .execute(&mut c)
                .await?;
            sqlx::query("VACUUM ANALYZE events").execute(&mut c).await?;
        }
    }
    println!(
        "prefilled {} done events in {:.1} s",
        a.rows,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `switchyard http` (ingest only, no worker) on the target; returns it once it answers.
async fn start_server(a: &Args, target: &Target) -> Result<(Child, u16)> {
    let port = free_port()?;
    let (k, v) = target.env();
    let child = Command::new(&a.bin)
        .arg("http")
        .env(k, v)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting switchyard http")?;
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok((child, port));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("switchyard http did not listen on {port} within 60 s")
}

/// One wrk run against `/webhook`.
async fn wrk(a: &Args, port: u16, tag: &str) -> Result<Latency> {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{}", a.connections), &format!("-d{}s", a.duration)])
        .args(["--timeout", "10s", "-s"])
        .arg(&a.lua)
        .arg(format!("http://127.0.0.1:{port}/webhook"))
        .args(["--", tag])
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk (install it: apt-get install wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Latency::parse(&String::from_utf8_lossy(&out.stdout))
}

/// The purge as an operator runs it; returns its duration and its output line.
async fn purge(a: &Args, target: &Target) -> Result<(Duration, String)> {
    let started = Instant::now();
    let out = switchyard(
        &a.bin,
        target,
        &["events", "purge", "--older-than", "1d", "--status", "done"],
    )
    .await?;
    Ok((
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// Load average and core count, printed with the figures (they are only as quiet as the machine).
fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cores} cores, load average {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Both runs on one target; true when the p99 target is met.
async fn bench(a: &Args, target: &Target) -> Result<bool> {
    prefill(a, target).await?;
    let (mut server, port) = start_server(a, target).await?;
    println!("machine before the runs: {}", machine_load());
    let alone = wrk(a, port, "alone").await?;
    // The purge starts a second into the run, so wrk's connections are already busy.
    let loaded = wrk(a, port, "purge");
    let purging = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        purge(a, target).await
    };
    let (with, purged) = tokio::join!(loaded, purging);
    let (with, (took, said)) = (with?, purged?);
    println!("machine after the runs: {}", machine_load());
    server.kill().await.ok();
    let inside = took + Duration::from_secs(1) <= Duration::from_secs(a.duration);
    println!(
        "\n[{}] {} old done events, wrk -t1 -c{} -d{}s",
        target.label(),
        a.rows,
        a.connections,
        a.duration
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>8}",
        "run", "req/s", "p99 ms", "max ms", "non-2xx"
    );
    for (name, l) in [("ingest alone", alone), ("ingest + purge", with)] {
        println!(
            "{:<16} {:>10.0} {:>10.2} {:>10.2} {:>8}   ({} responses)",
            name,
            l.rps,
            ms(l.p99_us),
            ms(l.max_us),
            l.non2xx,
            l.completed
        );
    }
    let delta = ms(with.p99_us) - ms(alone.p99_us);
    let pass = delta <= a.target_ms && inside && with.non2xx == 0 && alone.non2xx == 0;
    println!(
        "purge: {said} in {:.2} s{}",
        took.as_secs_f64(),
        if inside {
            ""
        } else {
            " (outlasted the wrk run: raise --duration)"
        }
    );
    println!(
        "p99 increase {delta:.2} ms, max increase {:.2} ms (target: p99 +{} ms or less) {}",
        ms(with.max_us) - ms(alone.max_us),
        a.target_ms,
        if pass { "pass" } else { "**FAIL**" }
    );
    Ok(pass)
}

/// Creates the target (a fresh temp file, or a fresh PostgreSQL database).
async fn create_target(a: &Args, dir: &std::path::Path) -> Result<Target> {
    let Some(server) = a.database_url.as_deref().filter(|u| !u.trim().is_empty()) else {
        return Ok(Target::Sqlite(dir.join("purgebench.sqlite3")));
    };
    let name = format!("purgebench_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(server).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .context("CREATE DATABASE (the URL's role needs CREATEDB)")?;
    Ok(Target::Postgres {
        server: server.to_string(),
        url: with_database(server, &name)?,
        name,
    })
}

/// Drops the PostgreSQL database of the run.
async fn drop_target(target: &Target) {
    if let Target::Postgres { server, name, .. } = target {
        let dropped = async {
            let mut admin = sqlx::PgConnection::connect(server).await?;
            sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut admin)
                .await
        };
        if let Err(e) = dropped.await {
            eprintln!("could not drop database {name}: {e}");
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let dir = std::env::temp_dir().join(format!("purgebench-{}", std::process::id()));
    let run = async {
        std::fs::create_dir_all(&dir)?;
        let target = create_target(&a, &dir).await?;
        let result = bench(&a, &target).await;
        drop_target(&target).await;
        result
    };
    let result = run.await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(2),
        Err(e) => {
            eprintln!("purgebench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
