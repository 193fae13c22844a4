//! Decodes a stream (diff and extra) on its own thread while `apply` reads the source, decodes
//! the control stream and writes the target.
//!
//! The applying thread hands each segment's compressed chunk to the stream's worker; the worker
//! decodes it into `BUFS` fixed-size buffers that travel to the applying thread through a
//! bounded channel and come back once consumed, so memory stays constant. A decode error
//! travels as a message; dropping either side ends the other (every blocking call fails once
//! its peer is gone), and a panic in the worker becomes a `DeltaError` on join.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{Scope, ScopedJoinHandle};

use super::codec::Codec;
use super::error::DeltaError;
use super::format::STREAMS;
use super::stream::StreamDecoder;

/// Size of one decoded buffer.
const BUF_LEN: usize = 64 << 10;
/// Number of decoded buffers in flight.
const BUFS: usize = 8;

/// One segment's compressed diff chunk and the raw bytes it decodes to.
struct Job {
    chunk: Vec<u8>,
    raw: u64,
}

/// Worker to applier: a filled buffer, or the end of a segment (its final check or an error).
enum Msg {
    Data(Vec<u8>),
    End(Result<(), DeltaError>),
}

/// The applying thread's end of one stream's pipeline.
pub(crate) struct Prefetch {
    name: &'static str,
    jobs: SyncSender<Job>,
    data: Receiver<Msg>,
    free: SyncSender<Vec<u8>>,
    cur: Option<Vec<u8>>,
    pos: usize,
    raw_left: u64,
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch")
            .field("name", &self.name)
            .field("raw_left", &self.raw_left)
            .finish()
    }
}

/// Worker handle to pass to [`join`].
pub(crate) type Worker<'scope> = ScopedJoinHandle<'scope, ()>;

impl Prefetch {
    /// Starts the worker of stream `index` (1 diff, 2 extra) in `scope`.
    pub(crate) fn spawn<'scope>(
        scope: &'scope Scope<'scope, '_>,
        index: usize,
        codec: Codec,
        window_log: u8,
    ) -> Result<(Self, Worker<'scope>), DeltaError> {
        let dec = StreamDecoder::new(index, codec, window_log)?;
        let (jobs, job_rx) = sync_channel(1);
        let (data_tx, data) = sync_channel(BUFS + 1);
        let (free, free_rx) = sync_channel(BUFS);
        for _ in 0..BUFS {
            free.send(Vec::with_capacity(BUF_LEN))
                .map_err(|_| worker_gone())?;
        }
        let worker = scope.spawn(move || decode_loop(dec, &job_rx, &free_rx, &data_tx));
        let me = Self {
            name: STREAMS[index],
            jobs,
            data,
            free,
            cur: None,
            pos: 0,
            raw_left: 0,
        };
        Ok((me, worker))
    }

    /// Hands the worker one segment's compressed chunk decoding to `raw` bytes.
    pub(crate) fn start_segment(&mut self, chunk: Vec<u8>, raw: u64) -> Result<(), DeltaError> {
        self.raw_left = raw;
        self.jobs.send(Job { chunk, raw }).map_err(|_| worker_gone())
    }

    /// Reads exactly `out.len()` decoded bytes.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result<(), DeltaError> {
        if out.len() as u64 > self.raw_left {
            return Err(DeltaError::Corrupt {
                what: StreamDecoder::short_msg(self.name),
            });
        }
        let mut filled = 0;
        while filled < out.len() {
            if self.cur.as_ref().is_none_or(|c| self.pos >= c.len()) {
                self.next_buf()?;
            }
            let cur = self.cur.as_deref().unwrap_or(&[]);
            let n = (cur.len() - self.pos).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&cur[self.pos..self.pos + n]);
            self.pos += n;
            filled += n;
        }
        self.raw_left -= out.len() as u64;
        Ok(())
    }

    /// Checks that the segment's chunk was used up exactly (the worker checks the chunk).
    pub(crate) fn end_segment(&mut self) -> Result<(), DeltaError> {
        if self.raw_left != 0 {
            return Err(DeltaError::Corrupt {
                what: StreamDecoder::unused_msg(self.name),
            });
        }
        self.recycle();
        match self.data.recv() {
            Ok(Msg::End(r)) => r,
            Ok(Msg::Data(_)) => Err(DeltaError::Corrupt {
                what: StreamDecoder::unused_msg(self.name),
            }),
            Err(_) => Err(worker_gone()),
        }
    }

    /// Returns the consumed buffer and waits for the next one.
    fn next_buf(&mut self) -> Result<(), DeltaError> {
        self.recycle();
        match self.data.recv() {
            Ok(Msg::Data(buf)) => {
                self.pos = 0;
                self.cur = Some(buf);
                Ok(())
            }
            Ok(Msg::End(Err(e))) => Err(e),
            Ok(Msg::End(Ok(()))) => Err(DeltaError::Corrupt {
                what: StreamDecoder::short_msg(self.name),
            }),
            Err(_) => Err(worker_gone()),
        }
    }

    fn recycle(&mut self) {
        if let Some(buf) = self.cur.take() {
            // Never blocks (at most `BUFS` buffers exist); fails only if the worker is gone,
            // which the next receive reports.
            let _ = self.free.send(buf);
        }
    }
}

/// Waits for the worker (whose `Prefetch` must be dropped by now) and merges its outcome into
/// the applying thread's result.
pub(crate) fn join<T>(worker: Worker<'_>, result: Result<T, DeltaError>) -> Result<T, DeltaError> {
    match worker.join() {
        Ok(()) => result,
        Err(_) => Err(DeltaError::Io {
            context: "decoding a patch stream on its thread",
            source: std::io::Error::other("stream decoder thread panicked"),
        }),
    }
}

fn worker_gone() -> DeltaError {
    DeltaError::Io {
        context: "decoding a patch stream on its thread",
        source: std::io::Error::other("stream decoder thread stopped"),
    }
}

/// The worker: decodes each job into free buffers until a channel closes or an error is sent.
fn decode_loop(
    mut dec: StreamDecoder,
    jobs: &Receiver<Job>,
    free: &Receiver<Vec<u8>>,
    out: &SyncSender<Msg>,
) {
    while let Ok(job) = jobs.recv() {
        dec.set_segment(job.chunk, job.raw);
        while dec.raw_left() > 0 {
            let n = dec.raw_left().min(BUF_LEN as u64) as usize;
            let Ok(mut buf) = free.recv() else { return };
            // Old contents are overwritten by the decoder: only a grown tail needs zeroing.
            buf.resize(n, 0);
            let msg = match dec.read(&mut buf) {
                Ok(()) => Msg::Data(buf),
                Err(e) => Msg::End(Err(e)),
            };
            let failed = matches!(msg, Msg::End(_));
            if out.send(msg).is_err() || failed {
                return;
            }
        }
        let end = dec.end_segment();
        let failed = end.is_err();
        if out.send(Msg::End(end)).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(len: u32) -> (Vec<u8>, Vec<u8>) {
        let raw: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect();
        let chunk = zstd::bulk::compress(&raw, 3).unwrap();
        (raw, chunk)
    }

    #[test]
    fn decodes_across_buffers_then_reports_a_bad_chunk() {
        let (raw, chunk) = segment(300_000);
        std::thread::scope(|s| {
            let (mut p, worker) = Prefetch::spawn(s, 1, Codec::Zstd, 20).unwrap();
            p.start_segment(chunk, raw.len() as u64).unwrap();
            let mut out = vec![0; raw.len()];
            p.read(&mut out[..1000]).unwrap();
            p.read(&mut out[1000..]).unwrap();
            assert_eq!(out, raw);
            p.end_segment().unwrap();
            p.start_segment(vec![1, 2, 3, 4], 10).unwrap();
            let err = p.read(&mut [0; 10]).unwrap_err();
            assert!(matches!(err, DeltaError::Corrupt { .. }), "{err}");
            drop(p);
            join(worker, Ok(())).unwrap();
        });
    }

    #[test]
    fn unused_bytes_and_early_drop_end_cleanly() {
        let (raw, chunk) = segment(2_000_000);
        std::thread::scope(|s| {
            let (mut p, worker) = Prefetch::spawn(s, 1, Codec::Zstd, 22).unwrap();
            p.start_segment(chunk.clone(), raw.len() as u64).unwrap();
            let mut out = [0u8; 10];
            p.read(&mut out).unwrap();
            assert!(p.end_segment().is_err());
            drop(p);
            join(worker, Ok(())).unwrap();
        });
    }
}
