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
use super::sink::{self, Sink};
use super::source::SourceRead;
use super::stream::StreamDecoder;
use super::x86;
use super::{ApplyOptions, ApplyStats, SourceCheck};

/// Size of the source-hashing buffer.
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
        let result = Sink::spawn(s, target)
            .and_then(|sink| Applier::new(source, &header, sink, [diff, extra]))
            .and_then(|run| run_segments(run, &mut patch));
        let result = prefetch::join(extra_worker, prefetch::join(diff_worker, result));
        match result {
            Err(DeltaError::TargetHashMismatch { .. }) if opts.source_check == SourceCheck::OnFailure => {
                // A wrong source is the likely cause: name it if so.
                verify_source(source, &header).and(result)
            }
            _ => result,
        }
    })
}

/// Runs every segment, checks the patch ends there and finishes the target.
fn run_segments<S, R, W>(mut run: Applier<'_, '_, S, W>, mut patch: R) -> Result<ApplyStats, DeltaError>
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
    match opts.source_check {
        SourceCheck::Full => verify_source(source, h),
        SourceCheck::SizeOnly | SourceCheck::OnFailure => Ok(()),
    }
}

/// Hashes the whole source and compares it with the header's digest.
fn verify_source<S: SourceRead + ?Sized>(source: &S, h: &PatchHeader) -> Result<(), DeltaError> {
    let size = source.size();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; IO_BUF];
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(IO_BUF as u64) as usize;
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
    Ok(())
}

/// State of one `apply` run.
struct Applier<'s, 'scope, S: ?Sized, W> {
    source: &'s S,
    header: PatchHeader,
    /// Target bytes are produced directly in the sink's buffer.
    out: Sink<'scope, W>,
    cursor: u64,
    /// Control stream decoder; the diff and extra streams decode on their own threads.
    ctrl: StreamDecoder,
    diff: Prefetch,
    extra: Prefetch,
    diff_buf: Vec<u8>,
    ctrl_buf: [u8; CTRL_BUF],
    ctrl_pos: usize,
    ctrl_len: usize,
    /// Displacement positions of the current add chunk (at most `sink::BUF_LEN / 5`).
    fields: Vec<u32>,
    stats: ApplyStats,
}

impl<'s, 'scope, S: SourceRead + ?Sized, W: Write> Applier<'s, 'scope, S, W> {
    fn new(
        source: &'s S,
        header: &PatchHeader,
        out: Sink<'scope, W>,
        [diff, extra]: [Prefetch; 2],
    ) -> Result<Self, DeltaError> {
        let (w, c) = (header.window_logs, header.codecs);
        Ok(Self {
            source,
            header: header.clone(),
            out,
            cursor: 0,
            ctrl: StreamDecoder::new(0, c[0], w[0])?,
            diff,
            extra,
            diff_buf: vec![0; sink::BUF_LEN],
            ctrl_buf: [0; CTRL_BUF],
            ctrl_pos: 0,
            ctrl_len: 0,
            fields: Vec::with_capacity(sink::BUF_LEN / 5 + 1),
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
        if n > self.header.target_size - self.out.written() {
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
            let room = self.out.room(left)?;
            let c = left.min(room.len() as u64) as usize;
            self.extra.read(&mut room[..c])?;
            self.out.commit(c);
            left -= c as u64;
        }
        Ok(())
    }

    fn source_op(&mut self, n: u64, add: bool) -> Result<(), DeltaError> {
        let mut left = n;
        while left > 0 {
            let room = self.out.room(left)?;
            let c = left.min(room.len() as u64) as usize;
            let dst = &mut room[..c];
            self.source
                .read_exact_at(dst, self.cursor)
                .map_err(DeltaError::io("reading the source"))?;
            let m = if add {
                add_chunk(
                    self.header.transform,
                    &mut self.diff,
                    dst,
                    &mut self.diff_buf,
                    &mut self.fields,
                    c as u64 == left,
                )?
            } else {
                c
            };
            self.out.commit(m);
            self.cursor += m as u64;
            self.stats.source_bytes_read += m as u64;
            left -= m as u64;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<ApplyStats, DeltaError> {
        let written = self.out.written();
        let digest = self.out.finish()?;
        if written != self.header.target_size {
            return Err(DeltaError::TargetSizeMismatch {
                expected: self.header.target_size,
                actual: written,
            });
        }
        let actual = Digest(digest);
        if actual != self.header.target_digest() {
            return Err(DeltaError::TargetHashMismatch {
                expected: self.header.target_digest(),
                actual,
            });
        }
        self.stats.target_bytes = written;
        Ok(self.stats)
    }
}

/// Turns the source bytes in `dst` into target bytes with the diff stream; returns how many
/// bytes it finished (less than `dst.len()` when an x86 instruction may straddle its end).
fn add_chunk(
    transform: Transform,
    diff: &mut Prefetch,
    dst: &mut [u8],
    diff_buf: &mut [u8],
    fields: &mut Vec<u32>,
    last: bool,
) -> Result<usize, DeltaError> {
    let c = dst.len();
    if transform == Transform::None {
        diff.read(&mut diff_buf[..c])?;
        dst.iter_mut()
            .zip(&diff_buf[..c])
            .for_each(|(s, d)| *s = s.wrapping_add(*d));
        return Ok(c);
    }
    fields.clear();
    let m = x86::walk(dst, last, |p| fields.push(p as u32));
    diff.read(&mut diff_buf[..m])?;
    x86::decode(&mut dst[..m], &mut diff_buf[..m], fields);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::super::{DiffOptions, diff};
    use super::*;

    #[test]
    fn on_failure_check_names_a_wrong_source_only_when_the_target_is_wrong() {
        let old: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
            .collect();
        let mut new = old.clone();
        new[1000..1100].fill(7);
        let mut patch = Vec::new();
        diff(&old, &new, &DiffOptions::default(), &mut patch).unwrap();
        let opts = ApplyOptions {
            source_check: SourceCheck::OnFailure,
            ..ApplyOptions::default()
        };
        let mut out = Vec::new();
        apply_with(old.as_slice(), patch.as_slice(), &mut out, &opts).unwrap();
        assert_eq!(out, new);
        let mut other = old.clone();
        other[1050] ^= 1;
        let err = apply_with(other.as_slice(), patch.as_slice(), std::io::sink(), &opts).unwrap_err();
        assert!(matches!(err, DeltaError::SourceMismatch { .. }), "{err}");
    }
}
