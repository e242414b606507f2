//! The drain phase: a queue pre-filled through the library's store, then `switchyard worker` timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use axum::http::{HeaderMap, HeaderValue};

use crate::bench::Bench;
use crate::db::*;
use crate::phases::*;
use crate::procs::*;
use switchyard::ingest::envelope::{RequestParts, build};
use switchyard::store::NewEvent;

impl Bench {
    pub(crate) async fn drain(&mut self, n: usize, mapped: bool) -> Result<()> {
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

/// Queues `n` webhooks as ingest would (same envelope) through the library's store:
/// the real enqueue path, group commit included, minus HTTP.
pub(crate) async fn prefill(t: &Target, n: usize, run: &str) -> Result<()> {
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
