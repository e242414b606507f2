//! Command-line options.

use std::path::PathBuf;

use clap::Parser;

/// Command-line options (bench/run.sh passes its own through).
#[derive(Parser, Debug)]
#[command(about = "switchyard end-to-end benchmark (see docs/PERFORMANCE.md)")]
pub(crate) struct Args {
    /// PostgreSQL server to benchmark on; a fresh database is created there per phase and dropped after.
    #[arg(long, env = "DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// The switchyard binary (release build).
    #[arg(long, default_value = "target/release/switchyard")]
    pub(crate) bin: PathBuf,
    /// A switchyard binary of an earlier tree (`bench/run.sh --baseline REV` builds one). On
    /// PostgreSQL its plain-text ingest runs in every round beside this tree's, and the
    /// same-run ratios judge this tree's TLS ingest against it (issue 26: ingest over TLS not
    /// below the plain figure of the tree the issue was filed against).
    #[arg(long)]
    pub(crate) baseline_bin: Option<PathBuf>,
    /// The echo ceiling binary (release build of examples/echo_ceiling.rs).
    #[arg(long, default_value = "target/release/examples/echo_ceiling")]
    pub(crate) echo: PathBuf,
    /// The wrk Lua script.
    #[arg(long, default_value = "bench/ingest.lua")]
    pub(crate) lua: PathBuf,
    /// Seconds per wrk phase.
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    pub(crate) connections: u32,
    /// Requests of the exact rows-vs-200s check after the ingest phase.
    #[arg(long, default_value_t = 5000)]
    pub(crate) exact_requests: usize,
    /// Webhooks sent one at a time for the idle webhook → done latency.
    #[arg(long, default_value_t = 300)]
    pub(crate) latency_samples: usize,
    /// Queue sizes drained with the noop mapping (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "50000,200000")]
    pub(crate) drain_sizes: Vec<usize>,
    /// On PostgreSQL: rounds of the ingest phase (the baseline's plain text if
    /// `--baseline-bin`, then plain text, then TLS) and of the noop
    /// drains (each size plain then TLS, graphile-worker after the smallest), interleaved;
    /// ratios are judged on the rounds' medians, since one pair of runs on a busy machine
    /// is mostly noise.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// graphile-worker's drain script (Node.js, packages installed beside it with npm) for
    /// the PostgreSQL comparison; skipped, saying why, when node or the packages are missing.
    #[arg(long, default_value = "bench/graphile/drain.mjs")]
    pub(crate) graphile: PathBuf,
    /// Queue size drained with no mapping at all (result "no mapping"); 0 skips it.
    #[arg(long, default_value_t = 50000)]
    pub(crate) drain_unmapped: usize,
    /// Events of the flow drain (`per_key: 1` over `--flow-keys` keys); 0 skips it.
    #[arg(long, default_value_t = 50000)]
    pub(crate) flow_events: usize,
    /// Keys of the flow drain.
    #[arg(long, default_value_t = 1000)]
    pub(crate) flow_keys: usize,
    /// Seconds of the storage soak at the end of the `serve` phase (bytes per event, RSS, fds); 0 skips it.
    #[arg(long, default_value_t = 30)]
    pub(crate) soak_seconds: u64,
    /// Webhooks per second of the storage soak (~60-byte bodies).
    #[arg(long, default_value_t = 7000)]
    pub(crate) soak_rate: u64,
    /// Phases to run (comma-separated): ceiling, ingest, serve, latency, drain, flow.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceiling,ingest,serve,latency,drain,flow"
    )]
    pub(crate) only: Vec<String>,
    /// Where databases and logs go (default: a new directory under the system temp dir).
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
    /// Record a CPU profile (`perf record`) of switchyard during the ingest and drain phases into this directory. Profiled runs are slower: do not mix their figures with unprofiled ones.
    #[arg(long)]
    pub(crate) perf_dir: Option<PathBuf>,
    /// Also write the table (markdown) to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Exit 2 when a target is missed (a failed step always exits 1).
    #[arg(long)]
    pub(crate) strict: bool,
}
