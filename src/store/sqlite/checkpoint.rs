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
//! with the last frame, and SQLite only rewinds the WAL when a checkpoint has caught up,
//! which only the writer can do, between two of its batches, while nobody writes. The
//! writer waits for that checkpoint, so it must find little left to copy. Once the WAL
//! passes [`REWIND_FRAMES`] this thread therefore checkpoints pass after pass, each copying
//! what arrived during the one before, until a pass is short ([`HANDOVER`]); then it asks the
//! writer to finish. The request stands (and this thread stays out of the writer's way)
//! until the writer's checkpoint has caught up, so the writer's next transaction starts the
//! WAL from its beginning, and the writer copies only a short tail. Partial checkpoints
//! leave the database file unsynced, so before asking, this thread also syncs it: the
//! writer's checkpoint would otherwise wait for all those pages to reach the disk.
//!
//! Should the thread fall behind (a disk slower than the writes), the writer's WAL hook
//! sees the WAL pass [`HARD_LIMIT_FRAMES`], and the writer checkpoints without waiting to
//! be asked: the WAL stays bounded whatever the load.

use std::cell::Cell;
use std::ffi::c_int;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::StoreError;

/// How long the thread lets commits accumulate before a checkpoint.
const PACE: Duration = Duration::from_millis(50);

/// WAL frames (pages) beyond which the WAL is rewound.
const REWIND_FRAMES: i64 = 4096;

/// WAL frames beyond which the writer checkpoints without waiting for the thread: the
/// bound on the WAL when the thread cannot keep up (a disk slower than the writes).
const HARD_LIMIT_FRAMES: c_int = 4 * REWIND_FRAMES as c_int;

/// Past [`HARD_LIMIT_FRAMES`], how many 1 ms waits for the checkpoint lock the writer makes
/// before its next batch.
const HARD_LIMIT_WAITS: u32 = 1000;

/// A catch-up pass this quick left little for the writer's checkpoint.
const HANDOVER: Duration = Duration::from_millis(3);

/// Catch-up passes before the writer is asked anyway (a disk slower than the writes).
const MAX_PASSES: u32 = 8;

/// Flags shared by the writer and the checkpoint thread.
#[derive(Default)]
struct Shared {
    /// Set by the writer after a commit; cleared when a checkpoint starts.
    dirty: AtomicBool,
    /// Set when the writer should finish a checkpoint so that the WAL can rewind.
    rewind: AtomicBool,
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
        // Syncs the database file between catch-up passes (see `checkpoint_round`).
        let db_file = File::open(path).map_err(|e| {
            StoreError::Config(format!(
                "cannot open SQLite database {} (APP_DB_PATH): {e}",
                path.display()
            ))
        })?;
        let shared = Arc::new(Shared::default());
        let for_thread = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &db_file, &for_thread))
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

    /// Makes SQLite report to [`Checkpointer::rewind_if_due`] how long the writer's commits
    /// leave the WAL; this also replaces SQLite's automatic checkpoint on that connection.
    pub(super) fn watch(&self, writer: &Connection) {
        writer.wal_hook(Some(note_wal_frames));
    }

    /// Between two batches: finishes a checkpoint if the thread asked for one, or if the WAL
    /// passed [`HARD_LIMIT_FRAMES`] before it did. A checkpoint that does not catch up (a
    /// reader still on old frames) leaves the request standing, to be tried again after the
    /// next batch. Past the hard limit the writer waits out a checkpoint of the thread's
    /// rather than let the WAL grow further: back-pressure when the disk falls behind.
    pub(super) fn rewind_if_due(&self, writer: &Connection) {
        let hard = WAL_FRAMES.get() >= HARD_LIMIT_FRAMES;
        if !hard && !self.shared.rewind.load(Ordering::Acquire) {
            return;
        }
        // Bounded, in case another process holds the checkpoint lock for long: then the
        // next batch goes ahead and this runs again after it.
        for _ in 0..HARD_LIMIT_WAITS {
            match passive_checkpoint(writer) {
                Ok(c) if c.caught_up() => self.shared.rewind.store(false, Ordering::Release),
                Ok(c) if c.busy && hard => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpoint by the writer failed");
                    self.shared.rewind.store(false, Ordering::Release);
                }
            }
            return;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

thread_local! {
    /// WAL frames after the writer's last commit, as SQLite's WAL hook reports them.
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// The writer connection's WAL hook: SQLite calls it on the writer's thread after each commit.
fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

fn run(conn: &Connection, db_file: &File, shared: &Shared) {
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
        if shared.rewind.load(Ordering::Acquire) {
            continue; // the writer's turn
        }
        if let Err(e) = checkpoint_round(conn, db_file, shared) {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry after the next commit");
        }
    }
}

/// One checkpoint; past [`REWIND_FRAMES`], catch-up passes and the request to the writer.
fn checkpoint_round(conn: &Connection, db_file: &File, shared: &Shared) -> rusqlite::Result<()> {
    if passive_checkpoint(conn)?.wal_frames < REWIND_FRAMES {
        return Ok(());
    }
    for _ in 0..MAX_PASSES {
        let started = Instant::now();
        passive_checkpoint(conn)?;
        if started.elapsed() <= HANDOVER || shared.stop.load(Ordering::Acquire) {
            break;
        }
    }
    // SQLite syncs the database file only in a checkpoint that reaches the WAL's end, so
    // the writer's would flush every page these passes copied (measured: 15-25 ms of the
    // writer's time per rewind). Flush them here, then copy what came in meanwhile.
    if let Err(e) = db_file.sync_data() {
        tracing::warn!(error = %e, "syncing the database file before a WAL rewind failed");
    }
    passive_checkpoint(conn)?;
    shared.rewind.store(true, Ordering::Release);
    Ok(())
}

/// What a checkpoint did.
struct Checkpoint {
    /// Another connection held the checkpoint lock, so nothing was done.
    busy: bool,
    /// Frames in the WAL.
    wal_frames: i64,
    /// Of those, frames now copied into the database file.
    copied: i64,
}

impl Checkpoint {
    /// Every frame is in the database file, so the next write transaction rewinds the WAL.
    fn caught_up(&self) -> bool {
        !self.busy && self.copied == self.wal_frames
    }
}

/// Runs `PRAGMA wal_checkpoint(PASSIVE)`.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<Checkpoint> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(Checkpoint {
            busy: r.get::<_, i64>(0)? != 0,
            wal_frames: r.get(1)?,
            copied: r.get(2)?,
        })
    })
}
