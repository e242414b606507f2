//! The drain phase: a queue pre-filled through the library's store, then `switchyard worker` timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use axum::http::{HeaderMap, HeaderValue};

use crate::bench::Bench;
use crate::body::bench_body;
use crate::db::*;
use crate::procs::*;
use switchyard::ingest::envelope::{RequestParts, build};
use switchyard::store::NewEvent;

/// What one drain measured.
struct Drained {
    n: usize,
    transport: Option<Transport>,
    mapped: bool,
    /// First claim → last finish, from the database's own stamps.
    busy: f64,
    /// Worker start → queue empty, start-up included.
    wall: Duration,
    cpu: Duration,
    switches: u64,
    db_cpu: Option<Duration>,
    done: i64,
    runs: i64,
}

impl Drained {
    fn rate(&self) -> f64 {
        self.n as f64 / self.busy
    }
}

impl Bench {
    /// Pre-fills `n` events, drains them with `switchyard worker` and reports the rate;
    /// on PostgreSQL over `transport`.
    pub(crate) async fn drain(&mut self, n: usize, mapped: bool, transport: Option<Transport>) -> Result<()> {
        let kind = if mapped { "noop mapping" } else { "no mapping" };
        let over = transport.map(|t| format!(", {}", t.label())).unwrap_or_default();
        let section = format!("drain {n} queued, {kind} ({}{over})", self.backend());
        let phase = format!("drain-{n}-{}", if mapped { "noop" } else { "unmapped" });
        println!("\n[{section}] pre-fill through Store::enqueue, then `switchyard worker`");
        let mut t = self.fresh(&phase).await?;
        if let Some(transport) = transport {
            t = t.over(transport);
        }
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
        let d = Drained {
            n,
            transport,
            mapped,
            busy: (last - first).num_microseconds().unwrap_or(1).max(1) as f64 / 1e6,
            wall,
            cpu,
            switches,
            db_cpu,
            done: probe.done().await?,
            runs: probe
                .count("SELECT count(*) FROM action_runs WHERE status = 'done'")
                .await?,
        };
        self.report_drain(&section, &d);
        self.others_line(&section, others);
        probe.close().await;
        let hwm = worker.stop(&mut self.report).await?;
        self.rss_line(&section, hwm);
        self.dispose(&t).await;
        Ok(())
    }

    /// The drain's lines: rate and CPU against issue 18's SQLite targets (noop mapping
    /// ≥ 25,000/s and ≤ 40 µs/event, no mapping ≥ 35,000/s) and rows. Ratios between
    /// drains come at the end ([`Bench::same_run_ratios`]).
    fn report_drain(&mut self, section: &str, d: &Drained) {
        let judged = self.backend() == "sqlite";
        let rate = d.rate();
        let (want, target) = if d.mapped {
            (25_000.0, "≥ 25,000/s")
        } else {
            (35_000.0, "≥ 35,000/s")
        };
        self.report.check(
            section,
            "drain rate (first claim → last finish)",
            format!(
                "{rate:.0} events/s ({:.2} s; wall with start-up {:.2} s)",
                d.busy,
                d.wall.as_secs_f64()
            ),
            if judged { target } else { "(reported)" },
            judged.then_some(rate >= want),
        );
        self.report.check(
            section,
            "events done / action_runs done",
            format!("{} / {}", d.done, d.runs),
            if d.mapped { "both = N" } else { "done = N, no runs" },
            Some(d.done as usize == d.n && d.runs as usize == if d.mapped { d.n } else { 0 }),
        );
        let us = d.cpu.as_secs_f64() * 1e6 / d.n as f64;
        let cores = format!(
            "{us:.0} µs/event, {:.2} cores busy",
            d.cpu.as_secs_f64() / d.wall.as_secs_f64()
        );
        let cpu_judged = judged && d.mapped;
        self.report.check(
            section,
            "worker CPU",
            cores,
            if cpu_judged { "≤ 40 µs/event" } else { "(reported)" },
            cpu_judged.then_some(us <= 40.0),
        );
        self.report.add(
            section,
            "worker context switches",
            format!("{:.1} per event", d.switches as f64 / d.n as f64),
        );
        if let Some(db) = d.db_cpu {
            self.report.add(
                section,
                "PostgreSQL server CPU",
                format!(
                    "{:.0} µs/event, {:.2} cores",
                    db.as_secs_f64() * 1e6 / d.n as f64,
                    db.as_secs_f64() / d.wall.as_secs_f64()
                ),
            );
        }
        if d.mapped {
            self.drain_rates.entry((d.transport, d.n)).or_default().push(rate);
        }
    }
}

/// Queues `n` webhooks as ingest would (same envelope) through the library's store:
/// the real enqueue path, group commit included, minus HTTP.
pub(crate) async fn prefill(t: &Target, n: usize, run: &str) -> Result<()> {
    prefill_keyed(t, n, run, 0).await
}

/// [`prefill`], event `i` carrying the header `x-bench-key: k<i % keys>` when `keys` > 0
/// (the flow drain's key).
pub(crate) async fn prefill_keyed(t: &Target, n: usize, run: &str, keys: usize) -> Result<()> {
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
                if keys > 0 {
                    headers.insert("x-bench-key", HeaderValue::from_str(&format!("k{}", i % keys))?);
                }
                let body = bench_body(&id);
                let env = build(&RequestParts {
                    hint: None,
                    method: "POST",
                    path: "/webhook",
                    query: None,
                    headers: &headers,
                    body: body.as_bytes(),
                    store_sensitive_headers: false,
                })?;
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
pub(crate) async fn wait_drained(probe: &Probe, limit: Duration) -> Result<()> {
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
