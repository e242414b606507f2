//! Server processes, CPU accounting (switchyard, PostgreSQL, the machine) and `perf record`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

use crate::report::Report;

/// A running server process.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) pid: i32,
    pub(crate) port: u16,
    pub(crate) name: String,
}

impl Server {
    pub(crate) fn status_field(&self, field: &str) -> Option<u64> {
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
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        self.status_field("VmHWM:").unwrap_or(0)
    }

    /// Context switches (voluntary + involuntary) of all live threads so far.
    pub(crate) fn context_switches(&self) -> u64 {
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
    pub(crate) fn cpu(&self) -> Duration {
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
    pub(crate) async fn stop(mut self, report: &mut Report) -> Result<u64> {
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
pub(crate) fn postgres_cpu() -> Duration {
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
pub(crate) fn machine_busy() -> Duration {
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
pub(crate) fn self_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// What the machine did in a window, to tell a clean measurement from one that shared
/// the cores with something else (a build, another benchmark).
#[derive(Clone, Copy)]
pub(crate) struct Load {
    pub(crate) at: Instant,
    pub(crate) busy: Duration,
    /// This program, its reaped children (wrk) and PostgreSQL.
    pub(crate) ours: Duration,
}

impl Load {
    pub(crate) fn now(pg: bool) -> Load {
        Load {
            at: Instant::now(),
            busy: machine_busy(),
            ours: self_cpu() + children_cpu() + if pg { postgres_cpu() } else { Duration::ZERO },
        }
    }

    /// Cores used by other processes since `self`, given the measured server's CPU.
    pub(crate) fn others_since(&self, pg: bool, server: Duration) -> f64 {
        let end = Load::now(pg);
        let other = end.busy.as_secs_f64()
            - self.busy.as_secs_f64()
            - (end.ours - self.ours).as_secs_f64()
            - server.as_secs_f64();
        other.max(0.0) / end.at.duration_since(self.at).as_secs_f64().max(1e-9)
    }
}

/// CPU time of all reaped children of this process (wrk's, once it has exited).
pub(crate) fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `perf record` attached to a process; stopped with SIGINT so it writes its file.
pub(crate) struct Perf(Option<Child>);

impl Perf {
    pub(crate) fn start(dir: Option<&Path>, name: &str, pid: i32) -> Result<Perf> {
        let Some(dir) = dir else { return Ok(Perf(None)) };
        std::fs::create_dir_all(dir)?;
        let out = dir.join(format!("{name}.perf.data"));
        // cpu-clock: hardware counters are often unavailable in VMs; 999 Hz keeps files small.
        // `-g` walks frame pointers (a `-C force-frame-pointers=yes` build); for a plain
        // release build `PERF_CALL_GRAPH=dwarf` unwinds from DWARF instead (larger files).
        let call_graph = std::env::var("PERF_CALL_GRAPH").unwrap_or_else(|_| "fp".into());
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "999",
                "--call-graph",
                &call_graph,
                "-o",
            ])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting perf (install linux-perf)")?;
        Ok(Perf(Some(child)))
    }

    pub(crate) async fn stop(self) {
        if let Some(mut c) = self.0 {
            if let Some(pid) = c.id() {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(pid as i32, libc::SIGINT) };
            }
            let _ = tokio::time::timeout(Duration::from_secs(60), c.wait()).await;
        }
    }
}
