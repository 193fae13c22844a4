//! Encoder: turns a `Plan` into the segmented patch format with three compressed streams.
//!
//! Each stream (control records, diff bytes, extra bytes) is compressed (zstd or LZMA2, see
//! `codec`) on its own thread(s) and flushed at every segment boundary, so a segment's chunk decodes completely
//! once the decoder has read it. Segments bound how much of each stream `apply` holds at once.

use std::io::Write;
use std::ops::Range;

use super::codec::{EncoderConfig, StreamEncoder};
use super::error::DeltaError;
use super::format::{self, PatchHeader, Transform, put_varint, zigzag};
use super::plan::Op;
use super::x86;
use super::{DiffOptions, DiffStats};

/// Longest control record sequence one op can produce (a seek and the op, 10 bytes each).
const MAX_RECORD_BYTES: usize = 20;

/// One stream's compressed output for one segment.
#[derive(Debug, Default)]
struct Chunk {
    raw: u64,
    data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Control,
    Diff(Transform),
    Extra,
}

/// Turns runs of at least `min_run` equal bytes inside adds into copies (they would only put
/// zeros into the diff stream), and splits adds and inserts longer than `cap` so every op fits
/// in one segment.
fn split_ops(ops: &[Op], (old, new): (&[u8], &[u8]), cap: usize, min_run: usize) -> Vec<Op> {
    let mut out = Vec::with_capacity(ops.len());
    let mut npos = 0;
    for &op in ops {
        match op {
            Op::Add { old: o, len } => {
                for (start, n, equal) in split_equal_runs(&old[o..o + len], &new[npos..npos + len], min_run) {
                    if equal {
                        out.push(Op::Copy {
                            old: o + start,
                            len: n,
                        });
                        continue;
                    }
                    for done in (0..n).step_by(cap) {
                        out.push(Op::Add {
                            old: o + start + done,
                            len: (n - done).min(cap),
                        });
                    }
                }
            }
            Op::Insert { len } => {
                for done in (0..len).step_by(cap) {
                    out.push(Op::Insert {
                        len: (len - done).min(cap),
                    });
                }
            }
            Op::Copy { .. } => out.push(op),
        }
        npos += op.len();
    }
    out
}

/// Splits `0..a.len()` into `(start, len, equal)` pieces where equal pieces are runs of at
/// least `min_run` bytes with `a == b`.
fn split_equal_runs(a: &[u8], b: &[u8], min_run: usize) -> Vec<(usize, usize, bool)> {
    let mut pieces = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < a.len() {
        if a[i] != b[i] {
            i += 1;
            continue;
        }
        let run_start = i;
        while i < a.len() && a[i] == b[i] {
            i += 1;
        }
        if i - run_start >= min_run {
            if run_start > start {
                pieces.push((start, run_start - start, false));
            }
            pieces.push((run_start, i - run_start, true));
            start = i;
        }
    }
    if start < a.len() {
        pieces.push((start, a.len() - start, false));
    }
    pieces
}

/// Groups ops into segments whose control, diff and extra bytes each stay within `cap`.
fn segments(ops: &[Op], cap: usize) -> Vec<Range<usize>> {
    let mut segs = Vec::new();
    let (mut start, mut ctrl, mut diff, mut extra) = (0, 0, 0, 0);
    for (i, op) in ops.iter().enumerate() {
        let (d, e) = match *op {
            Op::Add { len, .. } => (len, 0),
            Op::Insert { len } => (0, len),
            Op::Copy { .. } => (0, 0),
        };
        if ctrl + MAX_RECORD_BYTES > cap || diff + d > cap || extra + e > cap {
            segs.push(start..i);
            (start, ctrl, diff, extra) = (i, 0, 0, 0);
        }
        ctrl += MAX_RECORD_BYTES;
        diff += d;
        extra += e;
    }
    if start < ops.len() {
        segs.push(start..ops.len());
    }
    segs
}

/// Raw bytes of one stream for a run of ops; `npos`/`cursor` carry the target position and the
/// source cursor across segments.
fn fill(
    kind: Stream,
    ops: &[Op],
    old: &[u8],
    new: &[u8],
    npos: &mut usize,
    cursor: &mut usize,
    buf: &mut Vec<u8>,
) {
    for &op in ops {
        match (kind, op) {
            (Stream::Control, Op::Copy { old: o, len } | Op::Add { old: o, len }) => {
                if o != *cursor {
                    put_varint(buf, (zigzag(o as i64 - *cursor as i64) << 2) | format::KIND_SEEK);
                }
                let k = if matches!(op, Op::Copy { .. }) {
                    format::KIND_COPY
                } else {
                    format::KIND_ADD
                };
                put_varint(buf, ((len as u64) << 2) | k);
                *cursor = o + len;
            }
            (Stream::Control, Op::Insert { len }) => {
                put_varint(buf, ((len as u64) << 2) | format::KIND_INSERT)
            }
            (Stream::Diff(transform), Op::Add { old: o, len }) => {
                let (s, t) = (&old[o..o + len], &new[*npos..*npos + len]);
                match transform {
                    Transform::None => buf.extend(s.iter().zip(t).map(|(a, b)| b.wrapping_sub(*a))),
                    Transform::X86 => x86::encode(s, t, buf),
                }
            }
            (Stream::Extra, Op::Insert { len }) => buf.extend_from_slice(&new[*npos..*npos + len]),
            _ => {}
        }
        *npos += op.len();
    }
}

/// Compresses one stream's chunks for `segs` as one zstd frame or LZMA2 run; `start` is the
/// target position and source cursor before the first of them.
fn compress_part(
    kind: Stream,
    ops: &[Op],
    segs: &[Range<usize>],
    (old, new): (&[u8], &[u8]),
    cfg: &EncoderConfig,
    start: (usize, usize),
) -> std::io::Result<Vec<Chunk>> {
    let mut enc = StreamEncoder::new(cfg)?;
    let (mut npos, mut cursor) = start;
    let mut buf = Vec::new();
    let mut chunks = Vec::with_capacity(segs.len());
    for seg in segs {
        buf.clear();
        fill(
            kind,
            &ops[seg.clone()],
            old,
            new,
            &mut npos,
            &mut cursor,
            &mut buf,
        );
        chunks.push(Chunk {
            raw: buf.len() as u64,
            data: enc.chunk(&buf)?,
        });
    }
    // End the frame so that the next part's frame can follow it in the same stream.
    if chunks.iter().any(|c| c.raw > 0) {
        let tail = enc.finish()?;
        if let Some(last) = chunks.last_mut() {
            last.data.extend_from_slice(&tail);
        }
    }
    Ok(chunks)
}

/// Target position and source cursor at the start of each segment.
fn segment_starts(ops: &[Op], segs: &[Range<usize>]) -> Vec<(usize, usize)> {
    let (mut npos, mut cursor) = (0, 0);
    let mut starts = Vec::with_capacity(segs.len());
    for seg in segs {
        starts.push((npos, cursor));
        for op in &ops[seg.clone()] {
            if let Op::Copy { old, len } | Op::Add { old, len } = *op {
                cursor = old + len;
            }
            npos += op.len();
        }
    }
    starts
}

/// Splits a stream's segments into up to `threads` parts of at least `MIN_PART` raw bytes,
/// each compressed as its own zstd frame on its own thread (the decoder reads concatenated
/// frames as one stream).
fn parts(kind: Stream, ops: &[Op], segs: &[Range<usize>], threads: usize) -> Vec<Range<usize>> {
    const MIN_PART: usize = 4 << 20;
    let raw = |seg: &Range<usize>| -> usize {
        ops[seg.clone()]
            .iter()
            .map(|op| match (kind, *op) {
                (Stream::Diff(_), Op::Add { len, .. }) | (Stream::Extra, Op::Insert { len }) => len,
                _ => 0,
            })
            .sum()
    };
    let total: usize = segs.iter().map(raw).sum();
    let n = if kind == Stream::Control {
        1
    } else {
        (total / MIN_PART).clamp(1, threads)
    };
    let per = total.div_ceil(n).max(1);
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (i, seg) in segs.iter().enumerate() {
        acc += raw(seg);
        if acc >= per && out.len() + 1 < n {
            out.push(start..i + 1);
            (start, acc) = (i + 1, 0);
        }
    }
    out.push(start..segs.len());
    out
}

fn compress_streams(
    header: &PatchHeader,
    ops: &[Op],
    segs: &[Range<usize>],
    inputs: (&[u8], &[u8]),
    opts: &DiffOptions,
) -> Vec<std::io::Result<Vec<Chunk>>> {
    let starts = segment_starts(ops, segs);
    let kinds = [Stream::Control, Stream::Diff(header.transform), Stream::Extra];
    std::thread::scope(|s| {
        let handles: Vec<Vec<_>> = kinds
            .iter()
            .zip(header.window_logs)
            .zip(header.codecs)
            .map(|((&k, window_log), codec)| {
                let cfg = EncoderConfig {
                    codec,
                    window_log,
                    zstd_level: opts.level,
                    lzma: opts.lzma,
                };
                parts(k, ops, segs, opts.threads)
                    .into_iter()
                    .map(|r| {
                        let (segs, start) =
                            (&segs[r.clone()], starts.get(r.start).copied().unwrap_or((0, 0)));
                        s.spawn(move || compress_part(k, ops, segs, inputs, &cfg, start))
                    })
                    .collect()
            })
            .collect();
        handles
            .into_iter()
            .map(|hs| {
                let mut all = Vec::new();
                for h in hs {
                    all.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?);
                }
                Ok(all)
            })
            .collect()
    })
}

/// Compresses the plan and writes the whole patch to `out`.
pub(crate) fn write_patch<W: Write>(
    header: &PatchHeader,
    ops: &[Op],
    (old, new): (&[u8], &[u8]),
    opts: &DiffOptions,
    mut out: W,
    stats: &mut DiffStats,
) -> Result<(), DeltaError> {
    let cap = header.segment_cap as usize;
    let ops = split_ops(ops, (old, new), cap, opts.copy_run);
    let segs = segments(&ops, cap);
    let started = std::time::Instant::now();
    let results = compress_streams(header, &ops, &segs, (old, new), opts);
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        segments = segs.len(),
        "streams compressed"
    );
    let mut streams = Vec::with_capacity(3);
    for r in results {
        streams.push(r.map_err(DeltaError::io("compressing a patch stream"))?);
    }
    out.write_all(&header.to_bytes())
        .map_err(DeltaError::io("writing the patch"))?;
    let mut written = format::HEADER_LEN as u64;
    let mut head = Vec::with_capacity(64);
    for i in 0..segs.len() {
        head.clear();
        head.push(format::TAG_SEGMENT);
        for s in &streams {
            put_varint(&mut head, s[i].raw);
            put_varint(&mut head, s[i].data.len() as u64);
        }
        out.write_all(&head)
            .map_err(DeltaError::io("writing the patch"))?;
        written += head.len() as u64;
        for (k, s) in streams.iter().enumerate() {
            out.write_all(&s[i].data)
                .map_err(DeltaError::io("writing the patch"))?;
            written += s[i].data.len() as u64;
            stats.stream_bytes[k] += s[i].data.len() as u64;
        }
    }
    out.write_all(&[format::TAG_END])
        .map_err(DeltaError::io("writing the patch"))?;
    out.flush().map_err(DeltaError::io("writing the patch"))?;
    stats.patch_bytes = written + 1;
    stats.segments = segs.len() as u64;
    stats.ops = ops.len() as u64;
    Ok(())
}
