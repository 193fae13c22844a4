//! Encoder: turns a `Plan` into the segmented patch format with three zstd streams.
//!
//! Each stream (control records, diff bytes, extra bytes) is one zstd frame compressed on its
//! own thread and flushed at every segment boundary, so a segment's chunk decodes completely
//! once the decoder has read it. Segments bound how much of each stream `apply` holds at once.

use std::io::Write;
use std::ops::Range;

use super::error::DeltaError;
use super::format::{self, PatchHeader, put_varint, zigzag};
use super::plan::Op;
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
    Diff,
    Extra,
}

/// Splits adds and inserts longer than `cap` so every op fits in one segment.
fn split_long(ops: &[Op], cap: usize) -> Vec<Op> {
    let mut out = Vec::with_capacity(ops.len());
    for &op in ops {
        match op {
            Op::Add { old, len } => {
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(cap);
                    out.push(Op::Add {
                        old: old + done,
                        len: n,
                    });
                    done += n;
                }
            }
            Op::Insert { len } => {
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(cap);
                    out.push(Op::Insert { len: n });
                    done += n;
                }
            }
            Op::Copy { .. } => out.push(op),
        }
    }
    out
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
            (Stream::Diff, Op::Add { old: o, len }) => {
                let (s, t) = (&old[o..o + len], &new[*npos..*npos + len]);
                buf.extend(s.iter().zip(t).map(|(a, b)| b.wrapping_sub(*a)));
            }
            (Stream::Extra, Op::Insert { len }) => buf.extend_from_slice(&new[*npos..*npos + len]),
            _ => {}
        }
        *npos += op.len();
    }
}

fn compress_stream(
    kind: Stream,
    ops: &[Op],
    segs: &[Range<usize>],
    (old, new): (&[u8], &[u8]),
    level: i32,
    window_log: u8,
) -> std::io::Result<Vec<Chunk>> {
    let mut raw = zstd::stream::raw::Encoder::new(level)?;
    raw.set_parameter(zstd::stream::raw::CParameter::WindowLog(u32::from(window_log)))?;
    let mut enc = zstd::stream::write::Encoder::with_encoder(Vec::new(), raw);
    let (mut npos, mut cursor) = (0usize, 0usize);
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
        if !buf.is_empty() {
            enc.write_all(&buf)?;
            enc.flush()?;
        }
        chunks.push(Chunk {
            raw: buf.len() as u64,
            data: std::mem::take(enc.get_mut()),
        });
    }
    Ok(chunks)
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
    let ops = split_long(ops, cap);
    let segs = segments(&ops, cap);
    let kinds = [Stream::Control, Stream::Diff, Stream::Extra];
    let results: Vec<std::io::Result<Vec<Chunk>>> = std::thread::scope(|s| {
        let handles: Vec<_> = kinds
            .iter()
            .zip(header.window_logs)
            .map(|(&k, w)| {
                let (ops, segs) = (&ops, &segs);
                s.spawn(move || compress_stream(k, ops, segs, (old, new), opts.level, w))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
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
