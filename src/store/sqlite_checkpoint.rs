//! WAL checkpoints on a thread of their own, off the SQLite writer's critical path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages: that
//! commit copies the WAL into the database file and waits for two fsyncs while every
//! request queued behind it waits too (measured: a third of the ingest rate and most of
//! its p99, see docs/PERFORMANCE.md). Here the writer's connection has automatic
//! checkpoints off; after commits this thread runs a PASSIVE checkpoint on its own
//! connection, which copies and syncs without blocking the writer.
//!
//! A PASSIVE checkpoint never blocks writers, so under sustained load it never catches up
//! with the last frame, and SQLite only rewinds the WAL when a checkpoint has caught up.
//! So once a commit leaves more than [`REWIND_FRAMES`] pages in the WAL (the writer's WAL
//! hook counts them), the writer runs one checkpoint itself before its next batch: this
//! thread has copied almost every frame by then, so that checkpoint is short, and the
//! writer's next transaction starts the WAL from its beginning. The WAL stays bounded
//! without the writer ever copying it all.

use std::ffi::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

/// How long the thread lets commits accumulate before a checkpoint.
const PACE: Duration = Duration::from_millis(50);

/// WAL frames (pages) beyond which the writer finishes a checkpoint itself.
pub(super) const REWIND_FRAMES: c_int = 4096;

/// Flags shared by the writer and the checkpoint thread.
#[derive(Default)]
struct Shared {
    /// Set by the writer after a commit; cleared when a checkpoint starts.
    dirty: AtomicBool,
    /// Set when the writer stops.
    stop: AtomicBool,
}

/// The writer's handle on the checkpoint thread; dropping it stops the thread.
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Thread,
}

impl Checkpointer {
    /// Opens the checkpointing connection and starts the thread.
    pub(super) fn start(path: &Path, synchronous: &str) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        // The checkpoint's fsyncs follow this connection's setting, so it must match the writer's.
        conn.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))?;
        let shared = Arc::new(Shared::default());
        let for_thread = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &for_thread))
            .map_err(|e| StoreError::Config(format!("cannot start the SQLite checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            shared,
            thread: handle.thread().clone(),
        })
    }

    /// Tells the thread that the writer committed; wakes it only if it is idle.
    pub(super) fn committed(&self) {
        if !self.shared.dirty.swap(true, Ordering::AcqRel) {
            self.thread.unpark();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

fn run(conn: &Connection, shared: &Shared) {
    loop {
        while !shared.dirty.load(Ordering::Acquire) {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::park();
        }
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        std::thread::sleep(PACE);
        shared.dirty.store(false, Ordering::Release);
        if let Err(e) = passive_checkpoint(conn) {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry after the next commit");
        }
    }
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)`.
pub(super) fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    // It answers (busy, frames in the WAL, frames copied); busy only means that another
    // checkpoint was running, which is as good.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
