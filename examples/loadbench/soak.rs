//! The storage soak, run at the end of the `serve` phase: small webhooks at a fixed rate
//! into `serve` with a noop mapping, then bytes stored per event, resident memory and open
//! file descriptors before and after (issue 18, acceptance 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::bench::Bench;
use crate::db::{Probe, Target};
use crate::drain::wait_drained;
use crate::phases::post_ok;
use crate::procs::Server;

/// Bytes a database holds: the SQLite file plus its WAL after a full checkpoint, or
/// PostgreSQL's `pg_database_size`.
async fn stored_bytes(t: &Target, probe: &Probe) -> Result<u64> {
    match (t, probe) {
        (Target::Sqlite(path), Probe::Sqlite(pool)) => {
            // The service's own checkpoints may hold the lock for a moment: retry until a
            // TRUNCATE checkpoint completes, so the WAL holds nothing the file lacks.
            for _ in 0..100 {
                let busy: i64 = sqlx::query_scalar("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(pool)
                    .await?;
                if busy == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let len = |suffix: &str| {
                std::fs::metadata(format!("{}{suffix}", path.display()))
                    .map(|m| m.len())
                    .unwrap_or(0)
            };
            Ok(len("") + len("-wal"))
        }
        (_, Probe::Pg(pool)) => {
            let n: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(pool)
                .await?;
            Ok(n as u64)
        }
        (Target::Postgres { .. }, Probe::Sqlite(_)) => anyhow::bail!("probe and target disagree"),
    }
}

/// Resident set size now (VmRSS), MB, and open file descriptors of a server.
fn footprint(s: &Server) -> (f64, usize) {
    let rss = s.status_field("VmRSS:").unwrap_or(0) as f64 / 1024.0;
    let fds = std::fs::read_dir(format!("/proc/{}/fd", s.pid)).map_or(0, |d| d.count());
    (rss, fds)
}

/// A ~60-byte JSON body with `id` filled in (the issue's soak used bodies of that size).
fn small_body(id: &str) -> String {
    format!(r#"{{"id":"{id}","type":"order.created","n":1}}"#)
}

impl Bench {
    /// Sends `rate` webhooks a second for `secs` seconds from `conc` paced connections;
    /// returns (200s, other answers, seconds taken).
    async fn paced_post(&self, port: u16, rate: u64, secs: u64, conc: usize) -> (usize, usize, f64) {
        let n = (rate * secs) as usize;
        let oks = Arc::new(AtomicUsize::new(0));
        let others = Arc::new(AtomicUsize::new(0));
        // A client of its own, dropped on return: its keep-alive connections must not count
        // as the server's open fds at the end of the soak.
        let soak_client = reqwest::Client::new();
        let start = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..conc {
            let (oks, others, client) = (oks.clone(), others.clone(), soak_client.clone());
            let url = format!("http://127.0.0.1:{port}/webhook");
            let run = self.run_id.clone();
            tasks.spawn(async move {
                // Request i is due at i / rate seconds; connection k sends every conc-th one.
                for i in (k..n).step_by(conc) {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate as f64)).await;
                    let id = format!("soak-{run}-{i}");
                    let counter = if post_ok(&client, &url, &id, small_body(&id)).await {
                        &oks
                    } else {
                        &others
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let secs = start.elapsed().as_secs_f64();
        (oks.load(Ordering::Relaxed), others.load(Ordering::Relaxed), secs)
    }

    /// The soak on a running `serve` whose queue is drained; reports bytes per event,
    /// RSS and open fds before and after.
    pub(crate) async fn soak(&mut self, t: &Target, server: &Server, probe: &Probe) -> Result<()> {
        let (rate, secs) = (self.args.soak_rate, self.args.soak_seconds);
        if secs == 0 || rate == 0 {
            return Ok(());
        }
        let section = format!("storage soak, `serve`, noop mapping ({})", self.backend());
        println!("\n[{section}] {rate} req/s for {secs} s, ~60-byte bodies");
        let rows0 = probe.rows().await?;
        let bytes0 = stored_bytes(t, probe).await?;
        let (rss0, fds0) = footprint(server);
        let (oks, others, took) = self.paced_post(server.port, rate, secs, 32).await;
        wait_drained(probe, Duration::from_secs(300)).await?;
        // The soak's connections are closed; give the server a moment to see them go.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss1, fds1) = footprint(server);
        let started = Instant::now();
        let bytes1 = stored_bytes(t, probe).await?;
        let events = (probe.rows().await? - rows0).max(0) as u64;
        self.report.add(
            &section,
            "webhooks sent: 200s / other answers",
            format!(
                "{oks} / {others} in {took:.1} s ({:.0} req/s)",
                (oks + others) as f64 / took
            ),
        );
        let per_event = bytes1.saturating_sub(bytes0) as f64 / events.max(1) as f64;
        let judged = self.backend() == "sqlite";
        let what = if judged {
            "database + WAL growth after a checkpoint"
        } else {
            "pg_database_size growth"
        };
        self.report.check(
            &section,
            "bytes stored per event",
            format!(
                "{per_event:.0} ({what}: {:.1} MB for {events} events; checkpoint {:.1} s)",
                bytes1.saturating_sub(bytes0) as f64 / 1e6,
                started.elapsed().as_secs_f64()
            ),
            if judged { "≤ 1,000" } else { "(reported)" },
            judged.then_some(per_event <= 1000.0),
        );
        self.report
            .add(&section, "RSS start / end", format!("{rss0:.1} / {rss1:.1} MB"));
        self.report
            .add(&section, "open fds start / end", format!("{fds0} / {fds1}"));
        Ok(())
    }
}
