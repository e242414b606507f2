//! Reading a child's pipes with a size cap, and writing its stdin.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;

/// Size of the read buffer used per pipe.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes kept of the end of a pipe's output beyond the cap (the Claude CLI's result line
/// and a transcript's tail come last).
pub const TAIL_BYTES: usize = 256 * 1024;

/// Bytes kept from one pipe: the first `cap`, and the last [`TAIL_BYTES`] of the rest.
pub(super) struct Capture {
    pub(super) data: Vec<u8>,
    cap: usize,
    pub(super) truncated: bool,
    /// The end of what did not fit (at most [`TAIL_BYTES`]).
    pub(super) tail: Vec<u8>,
    /// How many bytes did not fit.
    pub(super) dropped: u64,
}

impl Capture {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            // Grow on demand: a large cap must not cost memory for quiet children.
            data: Vec::with_capacity(cap.min(READ_CHUNK)),
            cap,
            truncated: false,
            tail: Vec::new(),
            dropped: 0,
        }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        let room = self.cap.saturating_sub(self.data.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        let kept = chunk.len().min(room);
        self.data.extend_from_slice(&chunk[..kept]);
        let rest = &chunk[kept..];
        if !rest.is_empty() {
            self.dropped += rest.len() as u64;
            self.tail.extend_from_slice(rest);
            // Trim in steps, not per chunk, so a long output costs linear time.
            if self.tail.len() > 2 * TAIL_BYTES {
                self.tail.drain(..self.tail.len() - TAIL_BYTES);
            }
        }
    }

    /// The last [`TAIL_BYTES`] of what did not fit.
    pub(super) fn take_tail(&mut self) -> Vec<u8> {
        let extra = self.tail.len().saturating_sub(TAIL_BYTES);
        self.tail.drain(..extra);
        std::mem::take(&mut self.tail)
    }
}

/// Reads `reader` to EOF, keeping what fits in `capture` and discarding the rest.
pub(super) async fn drain<R: AsyncRead + Unpin>(mut reader: R, capture: &mut Capture) -> io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        capture.push(&buf[..n]);
    }
}

/// Writes `data` to the child's stdin and closes it; a child that stops reading is fine.
pub(super) async fn write_stdin(stdin: Option<ChildStdin>, data: &[u8]) {
    let Some(mut stdin) = stdin else { return };
    match stdin.write_all(data).await {
        Ok(()) => {}
        // The child exited or closed stdin without reading everything: not our problem.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => tracing::debug!(error = %e, "writing subprocess stdin failed"),
    }
    // Dropping the handle closes the pipe, so the child sees EOF.
    drop(stdin);
}
