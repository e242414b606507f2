//! Log set-up: text by default, JSON with `LOG_FORMAT=json`; `RUST_LOG` filters.

use std::io::{IsTerminal, Write};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::domain::LogFormat;

/// The filter when `RUST_LOG` is unset: our `info` lines, but sqlx's per-statement and
/// idle-ping lines (logged at `info`) only when `RUST_LOG` asks for them (`sqlx=debug`).
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Installs the global subscriber (stderr, through `Pending`; call [`flush`] before
/// exiting). Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BufferedStderr)
        // Colour codes only for a person at a terminal; logs read by tools stay plain.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A panic's message goes straight to stderr: the log lines before it go first.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        previous(info);
    }));
}

/// Most bytes of log lines waiting for the writer thread; a line that would pass it waits
/// until the thread has taken the buffer (stderr blocked: logging slows down, nothing is lost).
const MAX_PENDING: usize = 1 << 20;

/// Log lines on their way to stderr: appended by any thread, written by one thread.
///
/// One `write(2)` per line was ~3 % of a drained event's CPU (docs/PERFORMANCE.md): lines
/// now gather for [`GATHER`] and go out in one system call, so a line reaches stderr a few
/// milliseconds late at most. [`flush`] waits for all of them.
struct Pending {
    state: Mutex<PendingState>,
    /// Wakes the writer thread (lines arrived) and waiting loggers (room, or all written).
    changed: Condvar,
}

#[derive(Default)]
struct PendingState {
    lines: Vec<u8>,
    /// The writer thread holds lines it took and has not finished writing.
    writing: bool,
}

static PENDING: OnceLock<Option<&'static Pending>> = OnceLock::new();

/// The buffer, with its writer thread started on first use; None if no thread could start.
fn pending() -> Option<&'static Pending> {
    *PENDING.get_or_init(|| {
        let pending: &'static Pending = Box::leak(Box::new(Pending {
            state: Mutex::new(PendingState::default()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_loop(pending))
            .ok()
            .map(|_| pending)
    })
}

/// How long the writer thread lets lines gather once the first one arrived: a busy moment's
/// lines then share one `write(2)`, and the thread is woken once per batch, not per line.
const GATHER: Duration = Duration::from_millis(2);

fn write_loop(pending: &'static Pending) {
    let mut out = Vec::new();
    loop {
        {
            let mut state = pending.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.writing = false;
            pending.changed.notify_all();
            while state.lines.is_empty() {
                state = pending.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        }
        std::thread::sleep(GATHER);
        {
            let mut state = pending.state.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut out, &mut state.lines);
            state.writing = true;
            // Loggers waiting for room go on.
            pending.changed.notify_all();
        }
        // Nothing useful can be done when stderr itself fails.
        let _ = std::io::stderr().write_all(&out);
        out.clear();
    }
}

/// Waits until every log line so far is written to stderr (before exiting, or before
/// printing to stderr directly).
pub fn flush() {
    let Some(Some(pending)) = PENDING.get() else { return };
    let mut state = pending.state.lock().unwrap_or_else(PoisonError::into_inner);
    while !state.lines.is_empty() || state.writing {
        let (next, timeout) = pending
            .changed
            .wait_timeout(state, Duration::from_secs(5))
            .unwrap_or_else(PoisonError::into_inner);
        state = next;
        if timeout.timed_out() {
            // stderr is stuck: give up rather than hang the exit.
            return;
        }
    }
}

/// The `MakeWriter` of the log subscriber: each formatted line goes to [`Pending`].
#[derive(Clone, Copy)]
struct BufferedStderr;

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter
    }
}

/// Appends what the formatter writes (one whole line per call) to the pending lines.
struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(pending) = pending() else {
            return std::io::stderr().write(buf);
        };
        let mut state = pending.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state.lines.len() + buf.len() > MAX_PENDING && !state.lines.is_empty() {
            state = pending.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        let was_empty = state.lines.is_empty();
        state.lines.extend_from_slice(buf);
        if was_empty {
            pending.changed.notify_all();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
