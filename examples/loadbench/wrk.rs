//! wrk's result line (bench/ingest.lua) and its formatting.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, anyhow};

/// The line bench/ingest.lua prints in `done()`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Wrk {
    pub(crate) sent: u64,
    pub(crate) completed: u64,
    pub(crate) non2xx: u64,
    pub(crate) socket_errors: u64,
    pub(crate) duration_us: u64,
    pub(crate) rps: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
    /// wrk's own CPU time (it shares the cores with the server).
    pub(crate) cpu: Duration,
}

impl Wrk {
    pub(crate) fn parse(out: &str) -> Result<Wrk> {
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

    pub(crate) fn ok_200s(&self) -> u64 {
        self.completed.saturating_sub(self.non2xx)
    }
}

pub(crate) fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}
