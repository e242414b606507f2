//! The end-to-end benchmark behind `bench/run.sh`: starts switchyard and the axum echo
//! ceiling, drives them with wrk over loopback, measures what wrk cannot (webhook → done
//! latency, drain rates, rows stored, peak RSS) and prints one table.
//!
//! Phases (each on a fresh database; `--only` picks some):
//! - `ceiling`: `echo_ceiling` under wrk — the same client against a server that does nothing.
//! - `ingest`: `switchyard http` (no worker) under wrk: durable ingest; rows stored vs 200s;
//!   then an exact check (N requests from this program, every status counted, rows = 200s).
//! - `serve`: `switchyard serve` with a `noop` mapping under wrk: ingest while the worker drains.
//! - `latency`: `switchyard serve`, idle queue, one webhook at a time: webhook → `done`.
//! - `drain`: N events pre-filled through the library's `Store::enqueue` (the real group
//!   commit, no HTTP), then `switchyard worker` started and timed until all are `done`.
//!
//! Peak RSS is `VmHWM` of each switchyard process, read just before it is stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use axum::http::{HeaderMap, HeaderValue};
use chrono::{DateTime, Utc};
use clap::Parser;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AssertSqlSafe, PgPool, Row, SqlitePool};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use switchyard::ingest::envelope::{RequestParts, build};
use switchyard::settings::Settings;
use switchyard::store::NewEvent;

/// Command-line options (bench/run.sh passes its own through).
#[derive(Parser, Debug)]
#[command(about = "switchyard end-to-end benchmark (see docs/PERFORMANCE.md)")]
struct Args {
    /// PostgreSQL server to benchmark on; a fresh database is created there per phase and dropped after.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The switchyard binary (release build).
    #[arg(long, default_value = "target/release/switchyard")]
    bin: PathBuf,
    /// The echo ceiling binary (release build of examples/echo_ceiling.rs).
    #[arg(long, default_value = "target/release/examples/echo_ceiling")]
    echo: PathBuf,
    /// The wrk Lua script.
    #[arg(long, default_value = "bench/ingest.lua")]
    lua: PathBuf,
    /// Seconds per wrk phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Requests of the exact rows-vs-200s check after the ingest phase.
    #[arg(long, default_value_t = 5000)]
    exact_requests: usize,
    /// Webhooks sent one at a time for the idle webhook → done latency.
    #[arg(long, default_value_t = 300)]
    latency_samples: usize,
    /// Queue sizes drained with the noop mapping (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "50000,200000")]
    drain_sizes: Vec<usize>,
    /// Queue size drained with no mapping at all (result "no mapping"); 0 skips it.
    #[arg(long, default_value_t = 50000)]
    drain_unmapped: usize,
    /// Phases to run (comma-separated): ceiling, ingest, serve, latency, drain.
    #[arg(long, value_delimiter = ',', default_value = "ceiling,ingest,serve,latency,drain")]
    only: Vec<String>,
    /// Where databases and logs go (default: a new directory under the system temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Record a CPU profile (`perf record`) of switchyard during the ingest and drain phases into this directory. Profiled runs are slower: do not mix their figures with unprofiled ones.
    #[arg(long)]
    perf_dir: Option<PathBuf>,
    /// Also write the table (markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit 2 when a target is missed (a failed step always exits 1).
    #[arg(long)]
    strict: bool,
}

// ---------------------------------------------------------------------------------------
// Results

/// One line of the final table.
struct Line {
    section: String,
    figure: String,
    value: String,
    target: String,
    pass: Option<bool>,
}

#[derive(Default)]
struct Report {
    lines: Vec<Line>,
    peak_rss_kib: BTreeMap<String, u64>,
}

impl Report {
    fn add(&mut self, section: &str, figure: &str, value: impl Into<String>) {
        self.check(section, figure, value, "", None);
    }

    fn check(&mut self, section: &str, figure: &str, value: impl Into<String>, target: &str, pass: Option<bool>) {
        let line = Line {
            section: section.into(),
            figure: figure.into(),
            value: value.into(),
            target: target.into(),
            pass,
        };
        println!(
            "  {:<34} {:<44} {}",
            line.figure,
            line.value,
            match line.pass {
                Some(true) => format!("PASS ({})", line.target),
                Some(false) => format!("FAIL ({})", line.target),
                None => String::new(),
            }
        );
        self.lines.push(line);
    }

    fn markdown(&self) -> String {
        let mut s = String::from("| phase | figure | value | target | |\n|---|---|---|---|---|\n");
        for l in &self.lines {
            let verdict = match l.pass {
                Some(true) => "pass",
                Some(false) => "**FAIL**",
                None => "",
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                l.section, l.figure, l.value, l.target, verdict
            ));
        }
        s
    }
}

// ---------------------------------------------------------------------------------------
// Databases

/// Where one phase's data lives.
#[derive(Clone)]
enum Target {
    Sqlite(PathBuf),
    Postgres { url: String, name: String },
}

impl Target {
    /// Environment that points switchyard at this database.
    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Target::Sqlite(p) => vec![("APP_DB_PATH", p.display().to_string())],
            Target::Postgres { url, .. } => vec![("DATABASE_URL", url.clone())],
        }
    }

    fn settings(&self) -> Settings {
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
fn with_database(url: &str, db: &str) -> Result<String> {
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

/// Read-only queries the benchmark makes beside switchyard.
enum Probe {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

impl Probe {
    async fn connect(t: &Target) -> Result<Probe> {
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

    async fn count(&self, sql: &'static str) -> Result<i64> {
        Ok(match self {
            Probe::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await?,
            Probe::Pg(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await?,
        })
    }

    async fn rows(&self) -> Result<i64> {
        self.count("SELECT count(*) FROM events").await
    }

    async fn done(&self) -> Result<i64> {
        self.count("SELECT count(*) FROM events WHERE status = 'done'").await
    }

    /// Whether any event is not finished yet. EXISTS on the partial indexes answers in
    /// microseconds however long the queue is, so polling it does not load the machine.
    async fn unfinished(&self) -> Result<bool> {
        let n = self
            .count(
                "SELECT CAST(CASE WHEN EXISTS(SELECT 1 FROM events WHERE status IN ('pending', 'retry')) \
                 OR EXISTS(SELECT 1 FROM events WHERE status = 'processing') THEN 1 ELSE 0 END AS BIGINT)",
            )
            .await?;
        Ok(n > 0)
    }

    /// Status and processed_at of one event.
    async fn status(&self, id: i64) -> Result<(String, Option<String>)> {
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
    async fn busy_window(&self) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
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

    async fn close(self) {
        match self {
            Probe::Sqlite(p) => p.close().await,
            Probe::Pg(p) => p.close().await,
        }
    }
}

fn parse_ts(s: Option<&str>) -> Result<DateTime<Utc>> {
    let s = s.ok_or_else(|| anyhow!("missing timestamp"))?;
    Ok(DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("bad timestamp {s:?}"))?
        .with_timezone(&Utc))
}

// ---------------------------------------------------------------------------------------
// Processes

/// A running server process.
struct Server {
    child: Child,
    pid: i32,
    port: u16,
    name: String,
}

impl Server {
    fn status_field(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Peak resident set size so far (VmHWM), KiB.
    fn peak_rss_kib(&self) -> u64 {
        self.status_field("VmHWM:").unwrap_or(0)
    }

    /// Context switches (voluntary + involuntary) of all live threads so far.
    fn context_switches(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .flat_map(|status| {
                status
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    /// User + system CPU time of the whole process so far.
    fn cpu(&self) -> Duration {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return Duration::ZERO;
        };
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state), so field n is index n - 3.
        let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ticks = field(14) + field(15);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_secs_f64(ticks as f64 / hz as f64)
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the peak RSS read just before.
    async fn stop(mut self, report: &mut Report) -> Result<u64> {
        let hwm = self.peak_rss_kib();
        report.peak_rss_kib.insert(self.name.clone(), hwm);
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("{} did not stop on SIGTERM within 30 s; killing it", self.name);
                let _ = self.child.kill().await;
            }
        }
        Ok(hwm)
    }
}

/// CPU time of every process named `postgres` (the PostgreSQL server's backends, which
/// do the SQL work of the PostgreSQL runs; connections that closed are not counted).
fn postgres_cpu() -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    let ticks: u64 = procs
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| stat.contains("(postgres)"))
        .map(|stat| {
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            field(14) + field(15)
        })
        .sum();
    Duration::from_secs_f64(ticks as f64 / hz)
}

/// Busy CPU time of the whole machine (all cores) from /proc/stat.
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: everything but idle and iowait.
    let busy: u64 = f
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(busy as f64 / hz)
}

/// CPU time of this process.
fn self_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// What the machine did in a window, to tell a clean measurement from one that shared
/// the cores with something else (a build, another benchmark).
#[derive(Clone, Copy)]
struct Load {
    at: Instant,
    busy: Duration,
    /// This program, its reaped children (wrk) and PostgreSQL.
    ours: Duration,
}

impl Load {
    fn now(pg: bool) -> Load {
        Load {
            at: Instant::now(),
            busy: machine_busy(),
            ours: self_cpu() + children_cpu() + if pg { postgres_cpu() } else { Duration::ZERO },
        }
    }

    /// Cores used by other processes since `self`, given the measured server's CPU.
    fn others_since(&self, pg: bool, server: Duration) -> f64 {
        let end = Load::now(pg);
        let other = end.busy.as_secs_f64()
            - self.busy.as_secs_f64()
            - (end.ours - self.ours).as_secs_f64()
            - server.as_secs_f64();
        other.max(0.0) / end.at.duration_since(self.at).as_secs_f64().max(1e-9)
    }
}

/// CPU time of all reaped children of this process (wrk's, once it has exited).
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `perf record` attached to a process; stopped with SIGINT so it writes its file.
struct Perf(Option<Child>);

impl Perf {
    fn start(dir: Option<&Path>, name: &str, pid: i32) -> Result<Perf> {
        let Some(dir) = dir else { return Ok(Perf(None)) };
        std::fs::create_dir_all(dir)?;
        let out = dir.join(format!("{name}.perf.data"));
        // cpu-clock: hardware counters are often unavailable in VMs; 999 Hz keeps files small.
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting perf (install linux-perf)")?;
        Ok(Perf(Some(child)))
    }

    async fn stop(self) {
        if let Some(mut c) = self.0 {
            if let Some(pid) = c.id() {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(pid as i32, libc::SIGINT) };
            }
            let _ = tokio::time::timeout(Duration::from_secs(60), c.wait()).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// wrk

/// The line bench/ingest.lua prints in `done()`.
#[derive(Debug, Default, Clone)]
struct Wrk {
    sent: u64,
    completed: u64,
    non2xx: u64,
    socket_errors: u64,
    duration_us: u64,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    /// wrk's own CPU time (it shares the cores with the server).
    cpu: Duration,
}

impl Wrk {
    fn parse(out: &str) -> Result<Wrk> {
        let line = out
            .lines()
            .find(|l| l.starts_with("WRK_RESULT"))
            .ok_or_else(|| anyhow!("wrk printed no WRK_RESULT line:\n{out}"))?;
        let kv: BTreeMap<&str, &str> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .collect();
        let n = |k: &str| -> Result<u64> {
            kv.get(k)
                .ok_or_else(|| anyhow!("wrk result lacks {k}"))?
                .parse::<f64>()
                .map(|v| v as u64)
                .map_err(|e| anyhow!("wrk {k}: {e}"))
        };
        Ok(Wrk {
            sent: n("sent")?,
            completed: n("completed")?,
            non2xx: n("non2xx")?,
            socket_errors: n("socket_errors")?,
            duration_us: n("duration_us")?,
            rps: kv.get("rps").and_then(|v| v.parse().ok()).unwrap_or(0.0),
            p50_us: n("p50_us")?,
            p99_us: n("p99_us")?,
            p999_us: n("p999_us")?,
            max_us: n("max_us")?,
            cpu: Duration::ZERO,
        })
    }

    fn ok_200s(&self) -> u64 {
        self.completed.saturating_sub(self.non2xx)
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

// ---------------------------------------------------------------------------------------
// The benchmark

struct Bench {
    args: Args,
    work: PathBuf,
    pg_admin: Option<(String, PgPool)>,
    run_id: String,
    client: reqwest::Client,
    report: Report,
    ceiling_rps: Option<f64>,
    drain_rates: BTreeMap<usize, f64>,
    /// PostgreSQL databases created and not dropped yet (dropped at exit, even on failure).
    created: Vec<String>,
}

impl Bench {
    fn backend(&self) -> &'static str {
        if self.pg_admin.is_some() { "postgres" } else { "sqlite" }
    }

    /// A fresh, empty database for one phase.
    async fn fresh(&mut self, phase: &str) -> Result<Target> {
        let dir = self.work.join(phase);
        std::fs::create_dir_all(&dir)?;
        match &self.pg_admin {
            None => Ok(Target::Sqlite(dir.join("events.sqlite3"))),
            Some((url, admin)) => {
                let name = format!("sybench_{}_{}", self.run_id, phase.replace('-', "_"));
                sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(admin)
                    .await?;
                sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(admin)
                    .await
                    .context("CREATE DATABASE for the benchmark (the URL's role needs CREATEDB)")?;
                self.created.push(name.clone());
                Ok(Target::Postgres {
                    url: with_database(url, &name)?,
                    name,
                })
            }
        }
    }

    /// Drops a phase's database (PostgreSQL) or deletes its files (SQLite; logs stay).
    async fn dispose(&mut self, t: &Target) {
        match t {
            Target::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Target::Postgres { name, .. } => self.drop_pg(name).await,
        }
    }

    async fn drop_pg(&mut self, name: &str) {
        if let Some((_, admin)) = &self.pg_admin {
            match sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(admin)
                .await
            {
                Ok(_) => self.created.retain(|n| n != name),
                Err(e) => eprintln!("could not drop benchmark database {name}: {e}"),
            }
        }
    }

    fn switchyard(&self, t: &Target, phase: &str) -> Command {
        let dir = self.work.join(phase);
        let mut c = Command::new(&self.args.bin);
        // A clean environment: the service's defaults, whatever the caller has exported,
        // and no .env (the working directory is the phase's own).
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .current_dir(&dir)
            .kill_on_drop(true);
        for (k, v) in t.env() {
            c.env(k, v);
        }
        c
    }

    /// Runs a short switchyard command (e.g. `mapping set`) to completion.
    async fn cli(&self, t: &Target, phase: &str, args: &[&str]) -> Result<()> {
        let out = self
            .switchyard(t, phase)
            .args(args)
            .output()
            .await
            .with_context(|| format!("running switchyard {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "switchyard {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    async fn set_noop_mapping(&self, t: &Target, phase: &str) -> Result<()> {
        self.cli(
            t,
            phase,
            &[
                "mapping",
                "set",
                "--provider",
                "unknown",
                "--action",
                "bench_noop",
                "--handler-mode",
                "noop",
            ],
        )
        .await
    }

    /// Starts a switchyard role; HTTP roles are waited for until /healthz answers.
    async fn start(&self, t: &Target, phase: &str, role: &str) -> Result<Server> {
        let port = free_port()?;
        let log = std::fs::File::create(self.work.join(phase).join(format!("switchyard-{role}.log")))?;
        let child = self
            .switchyard(t, phase)
            .arg(role)
            .env("PORT", port.to_string())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {} {role}", self.args.bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("switchyard exited at once"))? as i32;
        let mut server = Server {
            child,
            pid,
            port,
            name: format!("{phase}: switchyard {role}"),
        };
        if role != "worker" {
            self.wait_healthy(&mut server).await?;
        }
        Ok(server)
    }

    async fn wait_healthy(&self, s: &mut Server) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/healthz", s.port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = s.child.try_wait() {
                bail!(
                    "{} exited with {status} before it was ready (see its log in {})",
                    s.name,
                    self.work.display()
                );
            }
            if let Ok(r) = self.client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{} did not answer /healthz within 60 s", s.name)
    }

    async fn wrk(&self, port: u16, tag: &str) -> Result<Wrk> {
        let a = &self.args;
        let cpu0 = children_cpu();
        let out = tokio::time::timeout(
            Duration::from_secs(a.duration + 60),
            Command::new("wrk")
                .arg(format!("-t{}", a.threads))
                .arg(format!("-c{}", a.connections))
                .arg(format!("-d{}s", a.duration))
                .args(["--timeout", "10s", "-s"])
                .arg(&a.lua)
                .arg(format!("http://127.0.0.1:{port}/webhook"))
                .args(["--", tag])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .context("wrk did not finish in time")?
        .context("running wrk (install it: apt-get install wrk)")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("wrk failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        }
        let mut w = Wrk::parse(&stdout)?;
        w.cpu = children_cpu().saturating_sub(cpu0);
        Ok(w)
    }

    fn report_wrk(&mut self, section: &str, w: &Wrk, cpu: Duration, switches: u64, db_cpu: Option<Duration>) {
        let r = &mut self.report;
        r.add(section, "requests/s", format!("{:.0}", w.rps));
        r.add(
            section,
            "latency p50 / p99 / p99.9 (max)",
            format!(
                "{} / {} / {} ({})",
                ms(w.p50_us),
                ms(w.p99_us),
                ms(w.p999_us),
                ms(w.max_us)
            ),
        );
        let wall = w.duration_us as f64 / 1e6;
        r.add(
            section,
            "CPU: server / wrk",
            format!(
                "{:.1} µs/request, {:.2} cores / wrk {:.2} cores",
                cpu.as_secs_f64() * 1e6 / (w.completed.max(1) as f64),
                cpu.as_secs_f64() / wall.max(1e-9),
                w.cpu.as_secs_f64() / wall.max(1e-9)
            ),
        );
        r.add(
            section,
            "server context switches",
            format!("{:.1} per request", switches as f64 / (w.completed.max(1) as f64)),
        );
        if let Some(db) = db_cpu {
            r.add(
                section,
                "PostgreSQL server CPU",
                format!(
                    "{:.1} µs/request, {:.2} cores",
                    db.as_secs_f64() * 1e6 / (w.completed.max(1) as f64),
                    db.as_secs_f64() / wall.max(1e-9)
                ),
            );
        }
    }

    /// Reports the CPU other processes used during a measurement; above 0.2 cores the
    /// figures of that phase are suspect (the machine has 2 cores).
    fn others_line(&mut self, section: &str, cores: f64) {
        self.report.check(
            section,
            "other processes' CPU meanwhile",
            format!("{cores:.2} cores"),
            "≤ 0.2 (a quiet machine)",
            Some(cores <= 0.2),
        );
    }

    /// PostgreSQL's CPU so far, when the run is on PostgreSQL.
    fn db_cpu(&self) -> Option<Duration> {
        self.pg_admin.as_ref().map(|_| postgres_cpu())
    }

    // -----------------------------------------------------------------------------------

    async fn ceiling(&mut self) -> Result<()> {
        println!(
            "\n[ceiling] axum echo server, wrk -t{} -c{}",
            self.args.threads, self.args.connections
        );
        let mut child = Command::new(&self.args.echo)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.args.echo.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), BufReader::new(stdout).read_line(&mut line))
            .await
            .context("echo_ceiling printed no port")??;
        let port: u16 = line.trim().parse().context("echo_ceiling's port")?;
        let pid = child.id().ok_or_else(|| anyhow!("echo_ceiling exited"))? as i32;
        let server = Server {
            child,
            pid,
            port,
            name: "ceiling: axum echo".into(),
        };
        let cpu0 = server.cpu();
        let cs0 = server.context_switches();
        let load = Load::now(false);
        let w = self.wrk(port, &format!("{}-ceiling", self.run_id)).await?;
        let cpu = server.cpu() - cpu0;
        let others = load.others_since(false, cpu);
        let switches = server.context_switches().saturating_sub(cs0);
        let hwm = server.peak_rss_kib();
        let mut server = server;
        let _ = server.child.kill().await;
        self.report_wrk("ceiling (axum echo)", &w, cpu, switches, None);
        self.others_line("ceiling (axum echo)", others);
        self.report.add(
            "ceiling (axum echo)",
            "non-2xx / socket errors",
            format!("{} / {}", w.non2xx, w.socket_errors),
        );
        self.report.add(
            "ceiling (axum echo)",
            "peak RSS (not switchyard)",
            format!("{:.1} MB", hwm as f64 / 1024.0),
        );
        self.ceiling_rps = Some(w.rps);
        Ok(())
    }

    /// Rows stored vs 200s for a wrk run: every 200 must be stored; requests still in
    /// flight when wrk stopped may be stored without wrk seeing their 200.
    async fn check_rows(&mut self, section: &str, probe: &Probe, w: &Wrk, rows_before: i64) -> Result<()> {
        // Let the server finish what wrk left in flight before counting.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let rows = (probe.rows().await? - rows_before) as u64;
        let ok = w.ok_200s();
        let pass = ok <= rows && rows <= w.sent;
        self.report.check(
            section,
            "rows stored vs 200s (wrk)",
            format!(
                "{rows} rows, {ok} 200s, {} sent ({} in flight at stop)",
                w.sent,
                w.sent.saturating_sub(w.completed)
            ),
            "200s ≤ rows ≤ sent",
            Some(pass),
        );
        Ok(())
    }

    /// Throughput as a share of the ceiling; `judged` only for the durable-ingest phase on
    /// SQLite, which is what the ≥ 0.33 target is about.
    fn ratio_line(&mut self, section: &str, w: &Wrk, judged: bool) {
        if let Some(c) = self.ceiling_rps {
            let ratio = w.rps / c;
            let judged = judged && self.backend() == "sqlite";
            let target = if judged { "≥ 0.33 × ceiling" } else { "(reported)" };
            self.report.check(
                section,
                "ratio to the ceiling",
                format!("{ratio:.3} ({:.0} / {c:.0})", w.rps),
                target,
                judged.then_some(ratio >= 0.33),
            );
        }
    }

    async fn ingest(&mut self) -> Result<()> {
        let section = format!("ingest, `http` role ({})", self.backend());
        println!("\n[{section}] durable ingest, no worker");
        let t = self.fresh("ingest").await?;
        let server = self.start(&t, "ingest", "http").await?;
        let probe = Probe::connect(&t).await?;
        let perf = Perf::start(
            self.args.perf_dir.as_deref(),
            &format!("ingest-{}", self.backend()),
            server.pid,
        )?;
        let cpu0 = server.cpu();
        let cs0 = server.context_switches();
        let db0 = self.db_cpu();
        let load = Load::now(self.pg_admin.is_some());
        let w = self.wrk(server.port, &format!("{}-ingest", self.run_id)).await?;
        let cpu = server.cpu() - cpu0;
        let others = load.others_since(self.pg_admin.is_some(), cpu);
        let switches = server.context_switches().saturating_sub(cs0);
        perf.stop().await;
        let db = self.db_cpu().zip(db0).map(|(a, b)| a.saturating_sub(b));
        self.report_wrk(&section, &w, cpu, switches, db);
        self.others_line(&section, others);
        self.ratio_line(&section, &w, true);
        self.report.check(
            &section,
            "non-2xx / socket errors",
            format!("{} / {}", w.non2xx, w.socket_errors),
            "0 non-2xx",
            Some(w.non2xx == 0),
        );
        self.check_rows(&section, &probe, &w, 0).await?;

        // Exact check: every response counted, so rows must equal the 200s exactly.
        let n = self.args.exact_requests;
        if n > 0 {
            let before = probe.rows().await?;
            let (oks, others) = self.post_many(server.port, n, self.args.connections as usize).await?;
            let rows = probe.rows().await? - before;
            self.report.check(
                &section,
                "exact check: rows vs 200s",
                format!("{n} sent, {oks} 200s, {others} other, {rows} rows"),
                "rows = 200s = sent",
                Some(rows as usize == oks && oks == n),
            );
        }
        probe.close().await;
        let hwm = server.stop(&mut self.report).await?;
        self.rss_line(&section, hwm);
        self.dispose(&t).await;
        Ok(())
    }

    /// POSTs `n` unique webhooks over `conc` concurrent connections; (200s, others).
    async fn post_many(&self, port: u16, n: usize, conc: usize) -> Result<(usize, usize)> {
        let next = Arc::new(AtomicUsize::new(0));
        let oks = Arc::new(AtomicUsize::new(0));
        let others = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..conc.max(1) {
            let (next, oks, others, client) = (next.clone(), oks.clone(), others.clone(), self.client.clone());
            let url = format!("http://127.0.0.1:{port}/webhook");
            let run = self.run_id.clone();
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let id = format!("exact-{run}-{i}");
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-event-id", &id)
                        .body(bench_body(&id))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => oks.fetch_add(1, Ordering::Relaxed),
                        _ => others.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok((oks.load(Ordering::Relaxed), others.load(Ordering::Relaxed)))
    }

    fn rss_line(&mut self, section: &str, hwm_kib: u64) {
        let mb = hwm_kib as f64 / 1024.0;
        self.report.check(
            section,
            "peak RSS (VmHWM)",
            format!("{mb:.1} MB"),
            "≤ 100 MB",
            Some(mb <= 100.0),
        );
    }

    async fn serve(&mut self) -> Result<()> {
        let section = format!("ingest while draining, `serve` role ({})", self.backend());
        println!("\n[{section}] wrk against serve with a noop mapping");
        let t = self.fresh("serve").await?;
        // Schema and mapping first, so the worker routes every event to noop.
        self.set_noop_mapping(&t, "serve").await?;
        let server = self.start(&t, "serve", "serve").await?;
        let probe = Probe::connect(&t).await?;
        let cpu0 = server.cpu();
        let cs0 = server.context_switches();
        let db0 = self.db_cpu();
        let load = Load::now(self.pg_admin.is_some());
        let w = self.wrk(server.port, &format!("{}-serve", self.run_id)).await?;
        let cpu = server.cpu() - cpu0;
        let others = load.others_since(self.pg_admin.is_some(), cpu);
        let switches = server.context_switches().saturating_sub(cs0);
        let done_at_stop = probe.done().await?;
        let db = self.db_cpu().zip(db0).map(|(a, b)| a.saturating_sub(b));
        self.report_wrk(&section, &w, cpu, switches, db);
        self.others_line(&section, others);
        self.ratio_line(&section, &w, false);
        self.report.check(
            &section,
            "non-2xx (so 5xx) / socket errors",
            format!("{} / {}", w.non2xx, w.socket_errors),
            "0 5xx",
            Some(w.non2xx == 0),
        );
        self.check_rows(&section, &probe, &w, 0).await?;
        let rows = probe.rows().await?;
        self.report.add(
            &section,
            "done during the wrk window",
            format!(
                "{done_at_stop} ({:.0}/s); backlog at stop {}",
                done_at_stop as f64 / (w.duration_us as f64 / 1e6),
                rows - done_at_stop
            ),
        );
        let started = Instant::now();
        wait_drained(&probe, Duration::from_secs(300)).await?;
        self.report.add(
            &section,
            "backlog drained after wrk stopped",
            format!("in {:.1} s", started.elapsed().as_secs_f64()),
        );
        probe.close().await;
        let hwm = server.stop(&mut self.report).await?;
        self.rss_line(&section, hwm);
        self.dispose(&t).await;
        Ok(())
    }

    async fn latency(&mut self) -> Result<()> {
        let section = format!("webhook → done, idle queue ({})", self.backend());
        let n = self.args.latency_samples;
        println!("\n[{section}] {n} webhooks, one at a time");
        let t = self.fresh("latency").await?;
        self.set_noop_mapping(&t, "latency").await?;
        let server = self.start(&t, "latency", "serve").await?;
        let probe = Probe::connect(&t).await?;
        let url = format!("http://127.0.0.1:{}/webhook", server.port);
        let mut stamped = Vec::with_capacity(n);
        let mut seen = Vec::with_capacity(n);
        for i in 0..n {
            // A short pause so each webhook finds an idle worker.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let id = format!("lat-{}-{i}", self.run_id);
            let sent_at = SystemTime::now();
            let t0 = Instant::now();
            let reply: serde_json::Value = self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-event-id", &id)
                .body(bench_body(&id))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let row_id = reply["row_id"]
                .as_i64()
                .ok_or_else(|| anyhow!("no row_id in {reply}"))?;
            let deadline = t0 + Duration::from_secs(10);
            loop {
                let (status, processed_at) = probe.status(row_id).await?;
                if status == "done" {
                    seen.push(t0.elapsed().as_secs_f64() * 1e3);
                    let done = parse_ts(processed_at.as_deref())?;
                    let sent: DateTime<Utc> = sent_at.into();
                    stamped.push((done - sent).num_microseconds().unwrap_or(0) as f64 / 1e3);
                    break;
                }
                if Instant::now() > deadline {
                    bail!("event {row_id} not done after 10 s (status {status})");
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        let (p50, p99) = (pct(&mut stamped, 50.0), pct(&mut stamped, 99.0));
        self.report.check(
            &section,
            "send → processed_at (DB stamp) p50 / p99",
            format!("{p50:.2} ms / {p99:.2} ms"),
            "p50 ≤ 3 ms",
            Some(p50 <= 3.0),
        );
        self.report.add(
            &section,
            "send → client saw done (200 µs poll) p50 / p99",
            format!("{:.2} ms / {:.2} ms", pct(&mut seen, 50.0), pct(&mut seen, 99.0)),
        );
        probe.close().await;
        let hwm = server.stop(&mut self.report).await?;
        self.rss_line(&section, hwm);
        self.dispose(&t).await;
        Ok(())
    }

    async fn drain(&mut self, n: usize, mapped: bool) -> Result<()> {
        let kind = if mapped { "noop mapping" } else { "no mapping" };
        let section = format!("drain {n} queued, {kind} ({})", self.backend());
        let phase = format!("drain-{n}-{}", if mapped { "noop" } else { "unmapped" });
        println!("\n[{section}] pre-fill through Store::enqueue, then `switchyard worker`");
        let t = self.fresh(&phase).await?;
        if mapped {
            self.set_noop_mapping(&t, &phase).await?;
        }
        let fill_started = Instant::now();
        prefill(&t, n, &self.run_id).await?;
        let fill = fill_started.elapsed();
        self.report.add(
            &section,
            "pre-fill (in-process Store::enqueue)",
            format!(
                "{:.1} s, {:.0} events/s",
                fill.as_secs_f64(),
                n as f64 / fill.as_secs_f64()
            ),
        );
        let probe = Probe::connect(&t).await?;
        let db0 = self.db_cpu();
        let load = Load::now(self.pg_admin.is_some());
        let started = Instant::now();
        let worker = self.start(&t, &phase, "worker").await?;
        let perf = Perf::start(
            self.args.perf_dir.as_deref(),
            &format!("{phase}-{}", self.backend()),
            worker.pid,
        )?;
        wait_drained(&probe, Duration::from_secs(600)).await?;
        let wall = started.elapsed();
        let cpu = worker.cpu();
        let others = load.others_since(self.pg_admin.is_some(), cpu);
        let switches = worker.context_switches();
        let db_cpu = self.db_cpu().zip(db0).map(|(a, b)| a.saturating_sub(b));
        perf.stop().await;
        let (first, last) = probe.busy_window().await?;
        let busy = (last - first).num_microseconds().unwrap_or(1).max(1) as f64 / 1e6;
        let done = probe.done().await?;
        let runs = probe
            .count("SELECT count(*) FROM action_runs WHERE status = 'done'")
            .await?;
        let rate = n as f64 / busy;
        // The drain targets are SQLite's; PostgreSQL's figures are reported (none set yet).
        let judged = self.backend() == "sqlite";
        self.report.check(
            &section,
            "drain rate (first claim → last finish)",
            format!(
                "{rate:.0} events/s ({busy:.2} s; wall with start-up {:.2} s)",
                wall.as_secs_f64()
            ),
            if judged { "≥ 20,000/s" } else { "(reported)" },
            judged.then_some(rate >= 20_000.0),
        );
        self.report.check(
            &section,
            "events done / action_runs done",
            format!("{done} / {runs}"),
            if mapped { "both = N" } else { "done = N, no runs" },
            Some(done as usize == n && runs as usize == if mapped { n } else { 0 }),
        );
        self.report.add(
            &section,
            "worker CPU",
            format!(
                "{:.0} µs/event, {:.2} cores busy",
                cpu.as_secs_f64() * 1e6 / n as f64,
                cpu.as_secs_f64() / wall.as_secs_f64()
            ),
        );
        self.report.add(
            &section,
            "worker context switches",
            format!("{:.1} per event", switches as f64 / n as f64),
        );
        if let Some(db) = db_cpu {
            self.report.add(
                &section,
                "PostgreSQL server CPU",
                format!(
                    "{:.0} µs/event, {:.2} cores",
                    db.as_secs_f64() * 1e6 / n as f64,
                    db.as_secs_f64() / wall.as_secs_f64()
                ),
            );
        }
        self.others_line(&section, others);
        if mapped {
            self.drain_rates.insert(n, rate);
            let smallest = self.drain_rates.iter().next().map(|(k, v)| (*k, *v));
            if let Some((k, base)) = smallest
                && k < n
            {
                self.report.check(
                    &section,
                    &format!("ratio to the {k} drain"),
                    format!("{:.3}", rate / base),
                    if judged { "≥ 0.9" } else { "(reported)" },
                    judged.then_some(rate / base >= 0.9),
                );
            }
        }
        probe.close().await;
        let hwm = worker.stop(&mut self.report).await?;
        self.rss_line(&section, hwm);
        self.dispose(&t).await;
        Ok(())
    }
}

/// The ~500-byte body of bench/ingest.lua with `id` filled in.
fn bench_body(id: &str) -> String {
    format!(
        concat!(
            r#"{{"id":"{id}","type":"order.created","api_version":"2024-06-01","created":1718000000,"#,
            r#""livemode":false,"data":{{"order":{{"number":"SO-000123","currency":"EUR","total":12999,"#,
            r#""customer":{{"email":"jane.doe@example.com","name":"Jane Doe","locale":"de-DE"}},"#,
            r#""lines":[{{"sku":"WIDGET-RED-42","qty":2,"unit_price":4999}},"#,
            r#"{{"sku":"GADGET-BLUE-7","qty":1,"unit_price":3001}}],"#,
            r#""shipping":{{"method":"standard","address":{{"line1":"Musterstrasse 1","city":"Berlin","#,
            r#""postal_code":"10115","country":"DE"}}}}}}}},"note":"benchmark payload padding ........"}}"#
        ),
        id = id
    )
}

/// Queues `n` webhooks as ingest would (same envelope) through the library's store:
/// the real enqueue path, group commit included, minus HTTP.
async fn prefill(t: &Target, n: usize, run: &str) -> Result<()> {
    let db = switchyard::store::open(&t.settings().store_config()).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    // Enough concurrent enqueues to fill the writer's batches.
    for _ in 0..256 {
        let (db, next, run) = (db.clone(), next.clone(), run.to_string());
        tasks.spawn(async move {
            let mut headers = HeaderMap::new();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert("host", HeaderValue::from_static("127.0.0.1"));
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                let id = format!("fill-{run}-{i}");
                headers.insert("x-event-id", HeaderValue::from_str(&id)?);
                let body = bench_body(&id);
                let env = build(&RequestParts {
                    hint: None,
                    method: "POST",
                    path: "/webhook",
                    query: None,
                    headers: &headers,
                    body: body.as_bytes(),
                    store_sensitive_headers: false,
                });
                db.enqueue(NewEvent {
                    source: switchyard::domain::Source::Webhook,
                    event_id: env.event_id,
                    payload_json: env.payload_json,
                })
                .await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    drop(db);
    // The SQLite writer closes its connection in the background; give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// Waits until no event is pending, retrying or processing.
async fn wait_drained(probe: &Probe, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if !probe.unfinished().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("queue not drained within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Nearest-rank percentile.
fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores, {cpu}, {:.1} GiB RAM", mem_kib as f64 / 1024.0 / 1024.0)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(2),
        Err(e) => {
            eprintln!("benchmark failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool> {
    let mut args = Args::parse();
    // Children run in per-phase directories: make every path absolute first.
    for p in [&mut args.bin, &mut args.echo, &mut args.lua] {
        *p = std::fs::canonicalize(&*p).with_context(|| format!("{} not found (build first)", p.display()))?;
    }
    let run_id = format!("{}", std::process::id());
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("switchyard-bench-{run_id}")),
    };
    std::fs::create_dir_all(&work)?;
    let pg_admin = match args.database_url.as_deref().filter(|u| !u.trim().is_empty()) {
        None => None,
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .context("connecting to the PostgreSQL server of --database-url")?;
            Some((url.to_string(), pool))
        }
        Some(_) => bail!("--database-url must be a postgres:// URL"),
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut b = Bench {
        args,
        work,
        pg_admin,
        run_id,
        client,
        report: Report::default(),
        ceiling_rps: None,
        drain_rates: BTreeMap::new(),
        created: Vec::new(),
    };
    let header = format!(
        "switchyard benchmark — backend {}, machine: {}; wrk -t{} -c{} -d{}s, ~550-byte JSON bodies, unique event ids",
        b.backend(),
        machine(),
        b.args.threads,
        b.args.connections,
        b.args.duration
    );
    println!("{header}\nwork dir: {}", b.work.display());

    let only = b.args.only.clone();
    let wants = |p: &str| only.iter().any(|o| o == p);
    let result = async {
        if wants("ceiling") {
            b.ceiling().await?;
        }
        if wants("ingest") {
            b.ingest().await?;
        }
        if wants("serve") {
            b.serve().await?;
        }
        if wants("latency") {
            b.latency().await?;
        }
        if wants("drain") {
            let mut sizes = b.args.drain_sizes.clone();
            sizes.sort_unstable();
            for n in sizes {
                b.drain(n, true).await?;
            }
            if b.args.drain_unmapped > 0 {
                b.drain(b.args.drain_unmapped, false).await?;
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    // Phases that failed left their databases behind.
    for name in b.created.clone() {
        b.drop_pg(&name).await;
    }

    if let Some(max) = b.report.peak_rss_kib.values().max().copied() {
        let who = b
            .report
            .peak_rss_kib
            .iter()
            .filter(|(k, _)| !k.starts_with("ceiling"))
            .max_by_key(|(_, v)| **v)
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        let mb = max as f64 / 1024.0;
        b.report.check(
            "whole run",
            "peak RSS, any switchyard process",
            format!("{mb:.1} MB ({who})"),
            "≤ 100 MB",
            Some(mb <= 100.0),
        );
    }
    let table = format!("{header}\n\n{}", b.report.markdown());
    println!("\n{table}");
    if let Some(out) = &b.args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    result?;
    let all_pass = b.report.lines.iter().all(|l| l.pass != Some(false));
    Ok(all_pass || !b.args.strict)
}
