//! `apply`: streams a patch onto a source, writing the target front to back in constant memory.
//!
//! Every length read from the patch is checked against the header's sizes and the format's
//! limits before it is used; the only buffers are fixed-size I/O buffers, one compressed
//! chunk per stream (at most `compress_bound(segment_cap)` bytes each) and the diff and extra
//! streams' decoded buffers, which `prefetch` fills on their own threads.

use std::io::{BufReader, Read, Write};

use sha2::{Digest as _, Sha256};

use super::error::{DeltaError, Digest};
use super::format::{self, PatchHeader, Transform, compress_bound, get_varint, read_varint, unzigzag};
use super::prefetch::{self, Prefetch};
use super::source::SourceRead;
use super::stream::StreamDecoder;
use super::x86;
use super::{ApplyOptions, ApplyStats, SourceCheck};

/// Size of the source, diff and output buffers.
const IO_BUF: usize = 64 << 10;
/// Size of the decoded-control buffer.
const CTRL_BUF: usize = 4 << 10;

/// Applies `patch` to `source`, writing the rebuilt image to `target`, checking the source's
/// size and SHA-256 first and the target's size and SHA-256 at the end.
pub fn apply<S, R, W>(source: &S, patch: R, target: W) -> Result<ApplyStats, DeltaError>
where
    S: SourceRead + ?Sized,
    R: Read,
    W: Write,
{
    apply_with(source, patch, target, &ApplyOptions::default())
}

/// `apply` with explicit options (e.g. skip the up-front source hash when the caller already
/// verified the source).
#[tracing::instrument(level = "debug", skip_all)]
pub fn apply_with<S, R, W>(
    source: &S,
    patch: R,
    target: W,
    opts: &ApplyOptions,
) -> Result<ApplyStats, DeltaError>
where
    S: SourceRead + ?Sized,
    R: Read,
    W: Write,
{
    let mut patch = BufReader::with_capacity(16 << 10, patch);
    let header = format::read_header(&mut patch)?;
    if header.target_size > opts.max_target_size {
        return Err(DeltaError::LimitExceeded {
            what: "target size",
            value: header.target_size,
            limit: opts.max_target_size,
        });
    }
    check_source(source, &header, opts)?;
    std::thread::scope(|s| {
        let (c, w) = (header.codecs, header.window_logs);
        let (diff, diff_worker) = Prefetch::spawn(s, 1, c[1], w[1])?;
        let (extra, extra_worker) = Prefetch::spawn(s, 2, c[2], w[2])?;
        let result = Applier::new(source, &header, target, [diff, extra])
            .and_then(|run| run_segments(run, &mut patch));
        prefetch::join(extra_worker, prefetch::join(diff_worker, result))
    })
}

/// Runs every segment, checks the patch ends there and finishes the target.
fn run_segments<S, R, W>(mut run: Applier<'_, S, W>, mut patch: R) -> Result<ApplyStats, DeltaError>
where
    S: SourceRead + ?Sized,
    R: Read,
    W: Write,
{
    loop {
        let mut tag = [0u8; 1];
        format::read_exact(&mut patch, &mut tag, "segment tag")?;
        match tag[0] {
            format::TAG_END => break,
            format::TAG_SEGMENT => run.segment(&mut patch)?,
            _ => {
                return Err(DeltaError::Corrupt {
                    what: "unknown segment tag",
                });
            }
        }
    }
    let mut probe = [0u8; 1];
    match patch.read(&mut probe) {
        Ok(0) => {}
        Ok(_) => {
            return Err(DeltaError::Corrupt {
                what: "data after the end of the patch",
            });
        }
        Err(e) => {
            return Err(DeltaError::Io {
                context: "reading the patch",
                source: e,
            });
        }
    }
    run.finish()
}

fn check_source<S: SourceRead + ?Sized>(
    source: &S,
    h: &PatchHeader,
    opts: &ApplyOptions,
) -> Result<(), DeltaError> {
    let actual = source.size();
    if actual != h.source_size {
        return Err(DeltaError::SourceSizeMismatch {
            expected: h.source_size,
            actual,
        });
    }
    if opts.source_check == SourceCheck::Full {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; IO_BUF];
        let mut off = 0u64;
        while off < actual {
            let n = (actual - off).min(IO_BUF as u64) as usize;
            source
                .read_exact_at(&mut buf[..n], off)
                .map_err(DeltaError::io("reading the source"))?;
            hasher.update(&buf[..n]);
            off += n as u64;
        }
        let actual = Digest(hasher.finalize().into());
        if actual != h.source_digest() {
            return Err(DeltaError::SourceMismatch {
                expected: h.source_digest(),
                actual,
            });
        }
    }
    Ok(())
}

/// State of one `apply` run.
struct Applier<'s, S: ?Sized, W> {
    source: &'s S,
    header: PatchHeader,
    out: W,
    out_buf: Vec<u8>,
    hasher: Sha256,
    written: u64,
    cursor: u64,
    /// Control stream decoder; the diff and extra streams decode on their own threads.
    ctrl: StreamDecoder,
    diff: Prefetch,
    extra: Prefetch,
    src_buf: Vec<u8>,
    diff_buf: Vec<u8>,
    ctrl_buf: [u8; CTRL_BUF],
    ctrl_pos: usize,
    ctrl_len: usize,
    /// Displacement positions of the current add chunk (at most `IO_BUF / 5`).
    fields: Vec<u32>,
    stats: ApplyStats,
}

impl<'s, S: SourceRead + ?Sized, W: Write> Applier<'s, S, W> {
    fn new(
        source: &'s S,
        header: &PatchHeader,
        out: W,
        [diff, extra]: [Prefetch; 2],
    ) -> Result<Self, DeltaError> {
        let (w, c) = (header.window_logs, header.codecs);
        Ok(Self {
            source,
            header: header.clone(),
            out,
            out_buf: Vec::with_capacity(IO_BUF),
            hasher: Sha256::new(),
            written: 0,
            cursor: 0,
            ctrl: StreamDecoder::new(0, c[0], w[0])?,
            diff,
            extra,
            src_buf: vec![0; IO_BUF],
            diff_buf: vec![0; IO_BUF],
            ctrl_buf: [0; CTRL_BUF],
            ctrl_pos: 0,
            ctrl_len: 0,
            fields: Vec::with_capacity(IO_BUF / 5 + 1),
            stats: ApplyStats {
                patch_bytes: format::HEADER_LEN as u64,
                ..ApplyStats::default()
            },
        })
    }

    /// Reads one segment's framing and chunks, then runs its control records.
    fn segment<R: Read>(&mut self, patch: &mut R) -> Result<(), DeltaError> {
        let cap = u64::from(self.header.segment_cap);
        let mut lens = [(0u64, 0u64); 3];
        for (k, l) in lens.iter_mut().enumerate() {
            let raw = read_varint(patch, "segment framing")?;
            let comp = read_varint(patch, "segment framing")?;
            if raw > cap {
                return Err(DeltaError::LimitExceeded {
                    what: format::STREAMS[k],
                    value: raw,
                    limit: cap,
                });
            }
            if comp > compress_bound(raw) {
                return Err(DeltaError::Corrupt {
                    what: "compressed chunk larger than its raw size allows",
                });
            }
            *l = (raw, comp);
        }
        let [(c_raw, c_comp), (d_raw, d_comp), (e_raw, e_comp)] = lens;
        let buf = self.ctrl.start_segment(c_comp as usize, c_raw);
        format::read_exact(patch, buf, "segment chunk")?;
        let mut chunk = vec![0; d_comp as usize];
        format::read_exact(patch, &mut chunk, "segment chunk")?;
        self.diff.start_segment(chunk, d_raw)?;
        let mut chunk = vec![0; e_comp as usize];
        format::read_exact(patch, &mut chunk, "segment chunk")?;
        self.extra.start_segment(chunk, e_raw)?;
        self.stats.patch_bytes += c_comp + d_comp + e_comp;
        self.stats.segments += 1;
        self.ctrl_pos = 0;
        self.ctrl_len = 0;
        while self.ctrl_pos < self.ctrl_len || self.ctrl.raw_left() > 0 {
            let v = get_varint(|| self.ctrl_byte(), "control record")?;
            self.record(v & 3, v >> 2)?;
            self.stats.ops += 1;
        }
        self.ctrl.end_segment()?;
        self.diff.end_segment()?;
        self.extra.end_segment()
    }

    fn ctrl_byte(&mut self) -> Result<u8, DeltaError> {
        if self.ctrl_pos == self.ctrl_len {
            let n = self.ctrl.raw_left().min(CTRL_BUF as u64) as usize;
            if n == 0 {
                return Err(DeltaError::Corrupt {
                    what: "control record cut at the end of its segment",
                });
            }
            self.ctrl.read(&mut self.ctrl_buf[..n])?;
            (self.ctrl_pos, self.ctrl_len) = (0, n);
        }
        self.ctrl_pos += 1;
        Ok(self.ctrl_buf[self.ctrl_pos - 1])
    }

    fn record(&mut self, kind: u64, n: u64) -> Result<(), DeltaError> {
        if kind == format::KIND_SEEK {
            let to = i128::from(self.cursor) + i128::from(unzigzag(n));
            if to < 0 || to > i128::from(self.header.source_size) {
                return Err(DeltaError::Corrupt {
                    what: "seek outside the source",
                });
            }
            self.cursor = to as u64;
            return Ok(());
        }
        if n > self.header.target_size - self.written {
            return Err(DeltaError::Corrupt {
                what: "record writes past the target size",
            });
        }
        if kind == format::KIND_INSERT {
            return self.insert(n);
        }
        if n > self.header.source_size - self.cursor {
            return Err(DeltaError::Corrupt {
                what: "record reads past the end of the source",
            });
        }
        self.source_op(n, kind == format::KIND_ADD)
    }

    fn insert(&mut self, n: u64) -> Result<(), DeltaError> {
        let mut left = n;
        while left > 0 {
            let c = left.min(IO_BUF as u64) as usize;
            self.extra.read(&mut self.src_buf[..c])?;
            self.emit_src(c)?;
            left -= c as u64;
        }
        Ok(())
    }

    fn source_op(&mut self, n: u64, add: bool) -> Result<(), DeltaError> {
        let mut left = n;
        while left > 0 {
            let c = left.min(IO_BUF as u64) as usize;
            self.source
                .read_exact_at(&mut self.src_buf[..c], self.cursor)
                .map_err(DeltaError::io("reading the source"))?;
            let m = if add {
                self.add_chunk(c, c as u64 == left)?
            } else {
                c
            };
            self.emit_src(m)?;
            self.cursor += m as u64;
            self.stats.source_bytes_read += m as u64;
            left -= m as u64;
        }
        Ok(())
    }

    /// Turns `src_buf[..c]` into target bytes with the diff stream; returns how many bytes it
    /// finished (less than `c` when an x86 instruction may straddle the chunk's end).
    fn add_chunk(&mut self, c: usize, last: bool) -> Result<usize, DeltaError> {
        if self.header.transform == Transform::None {
            self.diff.read(&mut self.diff_buf[..c])?;
            let (src, diff) = (&mut self.src_buf[..c], &self.diff_buf[..c]);
            src.iter_mut()
                .zip(diff)
                .for_each(|(s, d)| *s = s.wrapping_add(*d));
            return Ok(c);
        }
        self.fields.clear();
        let fields = &mut self.fields;
        let m = x86::walk(&self.src_buf[..c], last, |p| fields.push(p as u32));
        self.diff.read(&mut self.diff_buf[..m])?;
        x86::decode(&mut self.src_buf[..m], &mut self.diff_buf[..m], &self.fields);
        Ok(m)
    }

    /// Appends `src_buf[..c]` to the target.
    fn emit_src(&mut self, c: usize) -> Result<(), DeltaError> {
        if self.out_buf.len() + c > IO_BUF {
            self.flush_out()?;
        }
        self.out_buf.extend_from_slice(&self.src_buf[..c]);
        self.written += c as u64;
        Ok(())
    }

    fn flush_out(&mut self) -> Result<(), DeltaError> {
        self.hasher.update(&self.out_buf);
        self.out
            .write_all(&self.out_buf)
            .map_err(DeltaError::io("writing the target"))?;
        self.out_buf.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<ApplyStats, DeltaError> {
        self.flush_out()?;
        self.out.flush().map_err(DeltaError::io("writing the target"))?;
        if self.written != self.header.target_size {
            return Err(DeltaError::TargetSizeMismatch {
                expected: self.header.target_size,
                actual: self.written,
            });
        }
        let actual = Digest(self.hasher.finalize().into());
        if actual != self.header.target_digest() {
            return Err(DeltaError::TargetHashMismatch {
                expected: self.header.target_digest(),
                actual,
            });
        }
        self.stats.target_bytes = self.written;
        Ok(self.stats)
    }
}
