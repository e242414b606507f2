//! Log set-up: text by default, JSON with `LOG_FORMAT=json`; `RUST_LOG` filters.

use crate::domain::LogFormat;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is unset: our `info` lines, but sqlx's per-statement and
/// idle-ping lines (logged at `info`) only when `RUST_LOG` asks for them (`sqlx=debug`).
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Installs the global subscriber (stderr). Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal; logs read by tools stay plain.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
