//! The target side of `apply`: bytes are produced straight into fixed-size output buffers,
//! written in order by the applying thread and hashed (SHA-256) on a thread of their own.
//!
//! `BUFS` buffers of `BUF_LEN` bytes circulate: the one being filled, and the written ones
//! that travel to the hashing thread and come back, so memory stays constant. Dropping the
//! sink ends the hashing thread (its channel closes).

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use sha2::{Digest as _, Sha256};

use super::error::DeltaError;

/// Size of one output buffer (also the largest source read).
pub(crate) const BUF_LEN: usize = 128 << 10;
/// Number of output buffers.
const BUFS: usize = 4;
/// Free space below which `room` starts a new buffer rather than hand out a short tail (an
/// x86 add chunk needs more than one instruction's bytes to progress).
const MIN_ROOM: usize = 4 << 10;

/// Ordered, hashed output of one `apply` run.
pub(crate) struct Sink<'scope, W> {
    out: W,
    buf: Vec<u8>,
    len: usize,
    written: u64,
    full: Option<SyncSender<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
    hasher: Option<ScopedJoinHandle<'scope, [u8; 32]>>,
}

impl<W> std::fmt::Debug for Sink<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("len", &self.len)
            .field("written", &self.written)
            .finish()
    }
}

impl<'scope, W: Write> Sink<'scope, W> {
    /// Starts the hashing thread in `scope`.
    pub(crate) fn spawn(scope: &'scope Scope<'scope, '_>, out: W) -> Result<Self, DeltaError> {
        let (full, full_rx) = sync_channel::<Vec<u8>>(BUFS);
        let (free_tx, free) = sync_channel::<Vec<u8>>(BUFS);
        for _ in 1..BUFS {
            free_tx.send(vec![0; BUF_LEN]).map_err(|_| hasher_gone())?;
        }
        let hasher = scope.spawn(move || {
            let mut h = Sha256::new();
            for buf in full_rx {
                h.update(&buf);
                // Fails only once the sink is gone, when nobody needs the buffer back.
                let _ = free_tx.send(buf);
            }
            h.finalize().into()
        });
        Ok(Self {
            out,
            buf: vec![0; BUF_LEN],
            len: 0,
            written: 0,
            full: Some(full),
            free,
            hasher: Some(hasher),
        })
    }

    /// Bytes written so far (committed, not necessarily flushed).
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Free space at the end of the current buffer: at least `min(want, MIN_ROOM)` bytes.
    pub(crate) fn room(&mut self, want: u64) -> Result<&mut [u8], DeltaError> {
        if ((BUF_LEN - self.len) as u64) < want.min(MIN_ROOM as u64) {
            self.flush()?;
        }
        Ok(&mut self.buf[self.len..])
    }

    /// Marks the first `n` bytes last returned by `room` as target bytes.
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
        self.written += n as u64;
    }

    /// Writes the current buffer and passes it to the hashing thread.
    fn flush(&mut self) -> Result<(), DeltaError> {
        if self.len == 0 {
            return Ok(());
        }
        self.out
            .write_all(&self.buf[..self.len])
            .map_err(DeltaError::io("writing the target"))?;
        let mut next = self.free.recv().map_err(|_| hasher_gone())?;
        next.resize(BUF_LEN, 0);
        let mut done = std::mem::replace(&mut self.buf, next);
        done.truncate(self.len);
        self.len = 0;
        let full = self.full.as_ref().ok_or_else(hasher_gone)?;
        full.send(done).map_err(|_| hasher_gone())
    }

    /// Writes what is left, flushes the writer and returns the SHA-256 of everything written.
    pub(crate) fn finish(mut self) -> Result<[u8; 32], DeltaError> {
        self.flush()?;
        self.out.flush().map_err(DeltaError::io("writing the target"))?;
        drop(self.full.take());
        match self.hasher.take().map(ScopedJoinHandle::join) {
            Some(Ok(digest)) => Ok(digest),
            _ => Err(hasher_gone()),
        }
    }
}

fn hasher_gone() -> DeltaError {
    DeltaError::Io {
        context: "hashing the target on its thread",
        source: std::io::Error::other("target hashing thread stopped"),
    }
}
