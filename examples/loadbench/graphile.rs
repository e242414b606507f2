//! graphile-worker's drain on the same server, for the PostgreSQL comparison (issue 26).

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::Command;

use crate::bench::Bench;
use crate::db::{Transport, with_sslmode};

impl Bench {
    /// Runs `bench/graphile/drain.mjs` (graphile-worker drains `n` no-op jobs, plain text,
    /// in a database of its own) and records its jobs/s; a line says why when it cannot run.
    pub(crate) async fn graphile(&mut self, n: usize) -> Result<()> {
        let Some((url, _)) = &self.pg_admin else {
            return Ok(());
        };
        let section = format!("graphile-worker, {n} no-op jobs (postgres, plain)");
        println!("\n[{section}] bench/graphile/drain.mjs");
        let script = self.args.graphile.clone();
        let installed = script
            .parent()
            .is_some_and(|d| d.join("node_modules/graphile-worker").is_dir());
        if !installed {
            self.report.add(
                &section,
                "skipped",
                format!(
                    "{} or its node_modules missing (bench/run.sh installs them with npm)",
                    script.display()
                ),
            );
            return Ok(());
        }
        let url = with_sslmode(url, Transport::Plain.sslmode());
        let out = tokio::time::timeout(
            Duration::from_secs(900),
            Command::new("node").arg(&script).arg(&url).arg(n.to_string()).output(),
        )
        .await
        .context("graphile-worker's drain took over 900 s")?;
        let out = match out {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.report.add(&section, "skipped", "node is not installed");
                return Ok(());
            }
            Err(e) => return Err(e).context("running node"),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find(|l| l.contains(" jobs/s")).unwrap_or_default();
        let rate = line
            .split_once(": ")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        let (true, Some(rate)) = (out.status.success(), rate) else {
            anyhow::bail!(
                "graphile-worker's drain failed ({}): {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        };
        let detail = line.split_once(": ").map_or(line, |(_, rest)| rest);
        self.report
            .add(&section, "drain rate (first job → table empty)", detail);
        self.graphile_rates.push(rate);
        Ok(())
    }
}
