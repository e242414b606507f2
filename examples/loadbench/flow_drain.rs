//! The flow drain (issue 28): a queue of events over many keys, each key at most one run at
//! a time (`concurrency.per_key: 1`), drained by `switchyard worker`. Every event but the
//! first of its key waits once and is woken when the run before it ends, so this measures
//! what flow control costs per event on top of the plain drain.

use std::time::Instant;

use anyhow::Result;

use crate::bench::Bench;
use crate::db::*;
use crate::drain::{prefill_keyed, wait_drained};

impl Bench {
    /// Pre-fills `n` events over `keys` keys, drains them with a noop mapping whose flow
    /// has `per_key: 1`, and reports the rate and CPU per event.
    pub(crate) async fn flow_drain(&mut self, n: usize, keys: usize) -> Result<()> {
        let section = format!("flow drain {n} queued over {keys} keys, per_key 1 ({})", self.backend());
        let phase = format!("flow-{n}");
        println!("\n[{section}] pre-fill through Store::enqueue, then `switchyard worker`");
        let t = self.fresh(&phase).await?;
        self.cli(
            &t,
            &phase,
            &[
                "mapping",
                "set",
                "--create-db",
                "--provider",
                "unknown",
                "--action",
                "bench_flow",
                "--handler-mode",
                "noop",
                "--flow-json",
                r#"{"key": "{{header.x-bench-key}}", "concurrency": {"per_key": 1}}"#,
            ],
        )
        .await?;
        prefill_keyed(&t, n, &self.run_id, keys).await?;
        let probe = Probe::connect(&t).await?;
        let db0 = self.db_cpu();
        let started = Instant::now();
        let worker = self.start(&t, &phase, "worker").await?;
        wait_drained(&probe, std::time::Duration::from_secs(900)).await?;
        let wall = started.elapsed();
        let cpu = worker.cpu();
        let db_cpu = self.db_cpu().zip(db0).map(|(a, b)| a.saturating_sub(b));
        let (first, last) = probe.busy_window().await?;
        let busy = (last - first).num_microseconds().unwrap_or(1).max(1) as f64 / 1e6;
        let done = probe.done().await?;
        self.report.add(
            &section,
            "drain rate (first claim → last finish)",
            format!(
                "{:.0} events/s ({busy:.2} s; wall with start-up {:.2} s)",
                n as f64 / busy,
                wall.as_secs_f64()
            ),
        );
        self.report.check(
            &section,
            "events done",
            format!("{done}"),
            "= N",
            Some(done as usize == n),
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
        if let Some(db) = db_cpu {
            self.report.add(
                &section,
                "PostgreSQL server CPU",
                format!("{:.0} µs/event", db.as_secs_f64() * 1e6 / n as f64),
            );
        }
        probe.close().await;
        let hwm = worker.stop(&mut self.report).await?;
        self.rss_line(&section, hwm);
        self.dispose(&t).await;
        Ok(())
    }
}
