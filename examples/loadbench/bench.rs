//! The benchmark's state and the helpers every phase uses: databases, processes, wrk, table lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::process::Command;

use crate::args::Args;
use crate::db::*;
use crate::procs::*;
use crate::report::Report;
use crate::wrk::*;

pub(crate) struct Bench {
    pub(crate) args: Args,
    pub(crate) work: PathBuf,
    pub(crate) pg_admin: Option<(String, PgPool)>,
    pub(crate) run_id: String,
    pub(crate) client: reqwest::Client,
    pub(crate) report: Report,
    pub(crate) ceiling_rps: Option<f64>,
    /// The echo server's CPU per request in the ceiling phase, in µs.
    pub(crate) ceiling_cpu_us: Option<f64>,
    /// Every noop drain's rate, by transport and queue size, in the order measured.
    pub(crate) drain_rates: BTreeMap<(Option<Transport>, usize), Vec<f64>>,
    /// Every ingest phase's requests/s, by transport.
    pub(crate) ingest_rates: BTreeMap<Option<Transport>, Vec<f64>>,
    /// The baseline binary's plain-text ingest requests/s (`--baseline-bin`), one per round.
    pub(crate) baseline_ingest_rates: Vec<f64>,
    /// graphile-worker's jobs/s, one per round.
    pub(crate) graphile_rates: Vec<f64>,
    /// PostgreSQL databases created and not dropped yet (dropped at exit, even on failure).
    pub(crate) created: Vec<String>,
}

impl Bench {
    pub(crate) fn backend(&self) -> &'static str {
        if self.pg_admin.is_some() { "postgres" } else { "sqlite" }
    }

    /// A fresh, empty database for one phase.
    pub(crate) async fn fresh(&mut self, phase: &str) -> Result<Target> {
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
    pub(crate) async fn dispose(&mut self, t: &Target) {
        match t {
            Target::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Target::Postgres { name, .. } => self.drop_pg(name).await,
        }
    }

    pub(crate) async fn drop_pg(&mut self, name: &str) {
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

    pub(crate) fn switchyard(&self, t: &Target, phase: &str) -> Command {
        self.switchyard_bin(&self.args.bin, t, phase)
    }

    /// A command of the switchyard binary `bin` (this tree's or the baseline's).
    pub(crate) fn switchyard_bin(&self, bin: &Path, t: &Target, phase: &str) -> Command {
        let dir = self.work.join(phase);
        let mut c = Command::new(bin);
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
    pub(crate) async fn cli(&self, t: &Target, phase: &str, args: &[&str]) -> Result<()> {
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

    pub(crate) async fn set_noop_mapping(&self, t: &Target, phase: &str) -> Result<()> {
        self.cli(
            t,
            phase,
            &[
                "mapping",
                "set",
                // Operator commands no longer create a SQLite file of their own.
                "--create-db",
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
    pub(crate) async fn start(&self, t: &Target, phase: &str, role: &str) -> Result<Server> {
        self.start_bin(&self.args.bin, t, phase, role).await
    }

    /// Starts a role of the switchyard binary `bin`, as [`Bench::start`] does.
    pub(crate) async fn start_bin(&self, bin: &Path, t: &Target, phase: &str, role: &str) -> Result<Server> {
        let port = free_port()?;
        let log = std::fs::File::create(self.work.join(phase).join(format!("switchyard-{role}.log")))?;
        let child = self
            .switchyard_bin(bin, t, phase)
            .arg(role)
            .env("PORT", port.to_string())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {} {role}", bin.display()))?;
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

    pub(crate) async fn wait_healthy(&self, s: &mut Server) -> Result<()> {
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

    pub(crate) async fn wrk(&self, port: u16, tag: &str) -> Result<Wrk> {
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

    pub(crate) fn report_wrk(
        &mut self,
        section: &str,
        w: &Wrk,
        cpu: Duration,
        switches: u64,
        db_cpu: Option<Duration>,
    ) {
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
    pub(crate) fn others_line(&mut self, section: &str, cores: f64) {
        self.report.check(
            section,
            "other processes' CPU meanwhile",
            format!("{cores:.2} cores"),
            "≤ 0.2 (a quiet machine)",
            Some(cores <= 0.2),
        );
    }

    /// PostgreSQL's CPU so far, when the run is on PostgreSQL.
    pub(crate) fn db_cpu(&self) -> Option<Duration> {
        self.pg_admin.as_ref().map(|_| postgres_cpu())
    }

    // -----------------------------------------------------------------------------------
    pub(crate) async fn check_rows(&mut self, section: &str, probe: &Probe, w: &Wrk, rows_before: i64) -> Result<()> {
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

    /// Throughput as a share of the ceiling, judged against `target` on SQLite only (issue
    /// 18's targets: durable ingest ≥ 0.33, ingest while draining ≥ 0.25).
    pub(crate) fn ratio_line(&mut self, section: &str, w: &Wrk, target: f64) {
        if let Some(c) = self.ceiling_rps {
            let ratio = w.rps / c;
            let judged = self.backend() == "sqlite";
            let shown = if judged {
                format!("≥ {target} × ceiling")
            } else {
                "(reported)".into()
            };
            self.report.check(
                section,
                "ratio to the ceiling",
                format!("{ratio:.3} ({:.0} / {c:.0})", w.rps),
                &shown,
                judged.then_some(ratio >= target),
            );
        }
    }

    /// Server CPU per request as a multiple of the echo server's in the same run, judged on
    /// SQLite's durable ingest (issue 18: ≤ 2.5 ×).
    pub(crate) fn cpu_ratio_line(&mut self, section: &str, w: &Wrk, cpu: Duration) {
        if let Some(echo) = self.ceiling_cpu_us {
            let ours = cpu.as_secs_f64() * 1e6 / (w.completed.max(1) as f64);
            let ratio = ours / echo.max(1e-9);
            let judged = self.backend() == "sqlite";
            self.report.check(
                section,
                "CPU per request vs the echo's",
                format!("{ratio:.2} × ({ours:.1} / {echo:.1} µs)"),
                if judged { "≤ 2.5 × echo" } else { "(reported)" },
                judged.then_some(ratio <= 2.5),
            );
        }
    }

    pub(crate) fn rss_line(&mut self, section: &str, hwm_kib: u64) {
        let mb = hwm_kib as f64 / 1024.0;
        self.report.check(
            section,
            "peak RSS (VmHWM)",
            format!("{mb:.1} MB"),
            "≤ 100 MB",
            Some(mb <= 100.0),
        );
    }
}
