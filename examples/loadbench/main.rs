//! The end-to-end benchmark behind `bench/run.sh`: starts switchyard and the axum echo
//! ceiling, drives them with wrk over loopback, measures what wrk cannot (webhook → done
//! latency, drain rates, rows stored, peak RSS) and prints one table.
//!
//! Phases (each on a fresh database; `--only` picks some):
//! - `ceiling`: `echo_ceiling` under wrk — the same client against a server that does nothing.
//! - `ingest`: `switchyard http` (no worker) under wrk: durable ingest; rows stored vs 200s;
//!   then an exact check (N requests from this program, every status counted, rows = 200s).
//! - `serve`: `switchyard serve` with a `noop` mapping under wrk: ingest while the worker drains.
//!   At its end, a storage soak (`--soak-seconds`, `--soak-rate`): small webhooks at a
//!   fixed rate, then bytes stored per event, RSS and open fds before and after.
//! - `latency`: `switchyard serve`, idle queue, one webhook at a time: webhook → `done`.
//! - `drain`: N events pre-filled through the library's `Store::enqueue` (the real group
//!   commit, no HTTP), then `switchyard worker` started and timed until all are `done`.
//! - `flow`: the same over `--flow-keys` keys with a flow of `per_key: 1` (issue 28).
//!
//! Peak RSS is `VmHWM` of each switchyard process, read just before it is stopped.

mod args;
mod bench;
mod body;
mod db;
mod drain;
mod flow_drain;
mod graphile;
mod phases;
mod procs;
mod ratios;
mod report;
mod soak;
mod wrk;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::args::Args;
use crate::bench::Bench;
use crate::db::{Transport, with_sslmode};
use crate::report::Report;

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
    for p in [&mut args.bin, &mut args.echo, &mut args.lua]
        .into_iter()
        .chain(args.baseline_bin.as_mut())
    {
        *p = std::fs::canonicalize(&*p).with_context(|| format!("{} not found (build first)", p.display()))?;
    }
    // Optional: a missing script is reported where the comparison would run.
    if let Ok(p) = std::fs::canonicalize(&args.graphile) {
        args.graphile = p;
    }
    let run_id = format!("{}", std::process::id());
    let work = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("switchyard-bench-{run_id}")),
    };
    std::fs::create_dir_all(&work)?;
    let pg_admin = pg_admin(&args).await?;
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
        ceiling_cpu_us: None,
        drain_rates: BTreeMap::new(),
        ingest_rates: BTreeMap::new(),
        baseline_ingest_rates: Vec::new(),
        graphile_rates: Vec::new(),
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

    let result = b.phases().await;
    // Phases that failed left their databases behind.
    for name in b.created.clone() {
        b.drop_pg(&name).await;
    }

    b.check_peak_rss();
    let table = format!("{header}\n\n{}", b.report.markdown());
    println!("\n{table}");
    if let Some(out) = &b.args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    result?;
    let all_pass = b.report.lines.iter().all(|l| l.pass != Some(false));
    Ok(all_pass || !b.args.strict)
}

/// The admin connection to the PostgreSQL server of `--database-url`, if one is given.
async fn pg_admin(args: &Args) -> Result<Option<(String, sqlx::PgPool)>> {
    match args.database_url.as_deref().filter(|u| !u.trim().is_empty()) {
        None => Ok(None),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            // Over TLS unless the URL says otherwise, as managed PostgreSQL is reached
            // (the drains run both ways regardless).
            let url = if url.contains("sslmode=") {
                url.to_string()
            } else {
                with_sslmode(url, Transport::Tls.sslmode())
            };
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .context("connecting to the PostgreSQL server of --database-url")?;
            Ok(Some((url, pool)))
        }
        Some(_) => bail!("--database-url must be a postgres:// URL"),
    }
}

impl Bench {
    /// Runs the phases `--only` names, in the table's order.
    async fn phases(&mut self) -> Result<()> {
        let only = self.args.only.clone();
        let wants = |p: &str| only.iter().any(|o| o == p);
        if wants("ceiling") {
            self.ceiling().await?;
        }
        // PostgreSQL runs the ingest and the drains in rounds, plain text and TLS (and
        // graphile-worker beside the smallest drain) interleaved (issue 26); SQLite once.
        let pg = self.pg_admin.is_some();
        let rounds = if pg { self.args.rounds.max(1) } else { 1 };
        let transports: &[Option<Transport>] = if pg {
            &[Some(Transport::Plain), Some(Transport::Tls)]
        } else {
            &[None]
        };
        if wants("ingest") {
            let baseline = pg && self.args.baseline_bin.is_some();
            for _ in 0..rounds {
                if baseline {
                    self.ingest(transports[0], true).await?;
                }
                for &transport in transports {
                    self.ingest(transport, false).await?;
                }
            }
        }
        if wants("serve") {
            self.serve().await?;
        }
        if wants("latency") {
            self.latency().await?;
        }
        if wants("drain") {
            let mut sizes = self.args.drain_sizes.clone();
            sizes.sort_unstable();
            // Each round drains every size, so a slower spell of the machine lands in all
            // of them rather than in one.
            for _ in 0..rounds {
                for (i, &n) in sizes.iter().enumerate() {
                    for &transport in transports {
                        self.drain(n, true, transport).await?;
                    }
                    if pg && i == 0 {
                        self.graphile(n).await?;
                    }
                }
            }
            if self.args.drain_unmapped > 0 {
                self.drain(self.args.drain_unmapped, false, transports[0]).await?;
            }
        }
        self.same_run_ratios(rounds);
        if wants("flow") && self.args.flow_events > 0 {
            self.flow_drain(self.args.flow_events, self.args.flow_keys).await?;
        }
        Ok(())
    }

    /// The whole run's line: the highest peak RSS of any switchyard process (≤ 100 MB).
    fn check_peak_rss(&mut self) {
        let Some(max) = self.report.peak_rss_kib.values().max().copied() else {
            return;
        };
        let who = self
            .report
            .peak_rss_kib
            .iter()
            .filter(|(k, _)| !k.starts_with("ceiling"))
            .max_by_key(|(_, v)| **v)
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        let mb = max as f64 / 1024.0;
        self.report.check(
            "whole run",
            "peak RSS, any switchyard process",
            format!("{mb:.1} MB ({who})"),
            "≤ 100 MB",
            Some(mb <= 100.0),
        );
    }
}
