//! The HTTP phases: ceiling, durable ingest, ingest while draining, webhook → done latency.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::bench::Bench;
use crate::body::bench_body;
use crate::db::*;
use crate::drain::*;
use crate::procs::*;

impl Bench {
    pub(crate) async fn ceiling(&mut self) -> Result<()> {
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
        self.ceiling_cpu_us = Some(cpu.as_secs_f64() * 1e6 / (w.completed.max(1) as f64));
        Ok(())
    }

    /// Rows stored vs 200s for a wrk run: every 200 must be stored; requests still in
    /// flight when wrk stopped may be stored without wrk seeing their 200.
    /// On PostgreSQL over `transport`; by the `--baseline-bin` binary when `baseline`.
    pub(crate) async fn ingest(&mut self, transport: Option<Transport>, baseline: bool) -> Result<()> {
        let over = transport.map(|t| format!(", {}", t.label())).unwrap_or_default();
        let bin = match (&self.args.baseline_bin, baseline) {
            (Some(bin), true) => bin.clone(),
            _ => self.args.bin.clone(),
        };
        let of = if baseline {
            format!(", baseline {}", bin.display())
        } else {
            String::new()
        };
        let section = format!("ingest, `http` role ({}{over}{of})", self.backend());
        println!("\n[{section}] durable ingest, no worker");
        let mut t = self.fresh("ingest").await?;
        if let Some(transport) = transport {
            t = t.over(transport);
        }
        let server = self.start_bin(&bin, &t, "ingest", "http").await?;
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
        if baseline {
            self.baseline_ingest_rates.push(w.rps);
        } else {
            self.ingest_rates.entry(transport).or_default().push(w.rps);
        }
        self.others_line(&section, others);
        self.ratio_line(&section, &w, 0.33);
        self.cpu_ratio_line(&section, &w, cpu);
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
    pub(crate) async fn post_many(&self, port: u16, n: usize, conc: usize) -> Result<(usize, usize)> {
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
                    let counter = if post_ok(&client, &url, &id, bench_body(&id)).await {
                        &oks
                    } else {
                        &others
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok((oks.load(Ordering::Relaxed), others.load(Ordering::Relaxed)))
    }

    pub(crate) async fn serve(&mut self) -> Result<()> {
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
        self.ratio_line(&section, &w, 0.25);
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
        self.soak(&t, &server, &probe).await?;
        probe.close().await;
        let hwm = server.stop(&mut self.report).await?;
        self.rss_line(&section, hwm);
        self.dispose(&t).await;
        Ok(())
    }

    pub(crate) async fn latency(&mut self) -> Result<()> {
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
            // Issue 18's target on SQLite; PostgreSQL keeps the first wave's.
            if self.backend() == "sqlite" {
                "p50 ≤ 1 ms"
            } else {
                "p50 ≤ 3 ms"
            },
            Some(p50 <= if self.backend() == "sqlite" { 1.0 } else { 3.0 }),
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
}

/// The ~500-byte body of bench/ingest.lua with `id` filled in.
/// Posts one JSON webhook with `id` as its event id; true when the answer is 200.
pub(crate) async fn post_ok(client: &reqwest::Client, url: &str, id: &str, body: String) -> bool {
    let r = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-event-id", id)
        .body(body)
        .send()
        .await;
    matches!(r, Ok(r) if r.status() == 200)
}

/// Nearest-rank percentile.
pub(crate) fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}
