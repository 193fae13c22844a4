//! `diff`: builds the edit plan (block pass, then suffix-array matching of what is left) and
//! hands it to the encoder.

use std::borrow::Cow;
use std::io::Write;
use std::ops::Range;

use sha2::{Digest as _, Sha256};

use super::blocks::{self, Run};
use super::error::DeltaError;
use super::format::PatchHeader;
use super::plan::{Op, Plan};
use super::sufarray::SuffixIndex;
use super::{DiffOptions, DiffStats, encode};

/// Inputs must fit the suffix array's 32-bit positions.
const MAX_INPUT: usize = i32::MAX as usize;

/// Makes a patch that turns `old` into `new`, written to `out`.
#[tracing::instrument(level = "debug", skip_all, fields(old = old.len(), new = new.len()))]
pub fn diff<W: Write>(old: &[u8], new: &[u8], opts: &DiffOptions, out: W) -> Result<DiffStats, DeltaError> {
    opts.validate()?;
    for (what, data) in [("old", old), ("new", new)] {
        if data.len() > MAX_INPUT {
            return Err(DeltaError::InputTooLarge {
                what,
                size: data.len() as u64,
            });
        }
    }
    let (source_sha256, target_sha256) = std::thread::scope(|s| {
        let h = s.spawn(|| sha256(old));
        let t = sha256(new);
        (h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), t)
    });
    let header = PatchHeader {
        source_size: old.len() as u64,
        source_sha256,
        target_size: new.len() as u64,
        target_sha256,
        window_logs: opts.window_logs,
        codecs: opts.codecs,
        segment_cap: opts.segment_cap,
        transform: opts.transform,
    };
    let mut stats = DiffStats::default();
    let started = std::time::Instant::now();
    let plan = build_plan(old, new, opts, &mut stats);
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        ops = plan.ops.len(),
        "plan built"
    );
    debug_assert_eq!(plan.target_len(), new.len());
    for op in &plan.ops {
        match *op {
            Op::Copy { len, .. } => stats.copy_bytes += len as u64,
            Op::Add { len, .. } => stats.add_bytes += len as u64,
            Op::Insert { len } => stats.insert_bytes += len as u64,
        }
    }
    encode::write_patch(&header, &plan.ops, (old, new), opts, out, &mut stats)?;
    tracing::debug!(patch_bytes = stats.patch_bytes, ops = stats.ops, "delta written");
    Ok(stats)
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Block pass, then suffix-array matching of the gaps between block runs.
fn build_plan(old: &[u8], new: &[u8], opts: &DiffOptions, stats: &mut DiffStats) -> Plan {
    let runs = if opts.block_pass.enabled(old.len()) {
        blocks::find_runs(old, new, opts.block_size)
    } else {
        Vec::new()
    };
    let gaps = gaps_between(new.len(), &runs);
    let pieces = RemMap::new(blocks::unused_pieces(old.len(), &runs));
    let mut gap_ops = match_gaps(old, new, &pieces, &gaps, opts, stats);
    gap_ops.sort_by_key(|(start, _)| *start);
    let mut plan = Plan::default();
    let mut gi = gap_ops.into_iter().peekable();
    for run in &runs {
        while let Some((_, ops)) = gi.next_if(|(s, _)| *s < run.new) {
            ops.into_iter().for_each(|op| plan.push(op));
        }
        plan.push(Op::Copy {
            old: run.old,
            len: run.len,
        });
    }
    gi.flat_map(|(_, ops)| ops).for_each(|op| plan.push(op));
    plan
}

fn gaps_between(new_len: usize, runs: &[Run]) -> Vec<Range<usize>> {
    let mut gaps = Vec::new();
    let mut pos = 0;
    for r in runs {
        if r.new > pos {
            gaps.push(pos..r.new);
        }
        pos = r.new + r.len;
    }
    if pos < new_len {
        gaps.push(pos..new_len);
    }
    gaps
}

/// Maps positions in the concatenation of unused source pieces back to source positions.
#[derive(Debug)]
struct RemMap {
    /// `(rem_start, old_start, len)`, sorted by `rem_start`.
    pieces: Vec<(usize, usize, usize)>,
    total: usize,
}

impl RemMap {
    fn new(pieces: Vec<(usize, usize)>) -> Self {
        let mut total = 0;
        let pieces = pieces
            .into_iter()
            .map(|(o, l)| {
                total += l;
                (total - l, o, l)
            })
            .collect();
        Self { pieces, total }
    }

    /// The bytes of `rem[range]`, borrowed when they are one piece of `old`.
    fn text<'a>(&self, old: &'a [u8], range: Range<usize>) -> Cow<'a, [u8]> {
        let mut out = Vec::new();
        let first = self.pieces.partition_point(|p| p.0 + p.2 <= range.start);
        for &(r, o, l) in &self.pieces[first..] {
            if r >= range.end {
                break;
            }
            let (s, e) = (range.start.max(r), range.end.min(r + l));
            let slice = &old[o + s - r..o + e - r];
            if s == range.start && e == range.end {
                return Cow::Borrowed(slice);
            }
            out.extend_from_slice(slice);
        }
        Cow::Owned(out)
    }

    /// Emits source-side ops for `rem[p..p + len]`, one per piece it crosses.
    fn push_add(&self, p: usize, len: usize, out: &mut Vec<Op>) {
        let mut i = self.pieces.partition_point(|q| q.0 + q.2 <= p);
        let (mut p, mut left) = (p, len);
        while left > 0 {
            let Some(&(r, o, l)) = self.pieces.get(i) else {
                return;
            };
            let n = left.min(r + l - p);
            out.push(Op::Add {
                old: o + p - r,
                len: n,
            });
            (p, left, i) = (p + n, left - n, i + 1);
        }
    }
}

/// Splits `ranges` into `parts` consecutive groups of about equal byte counts.
fn split_even(ranges: &[Range<usize>], parts: usize) -> Vec<Vec<Range<usize>>> {
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    let per = total.div_ceil(parts.max(1)).max(1);
    let mut groups = vec![Vec::new()];
    let mut filled = 0;
    for r in ranges {
        let mut start = r.start;
        while start < r.end {
            if filled == per {
                groups.push(Vec::new());
                filled = 0;
            }
            let end = r.end.min(start + per - filled);
            if let Some(g) = groups.last_mut() {
                g.push(start..end);
            }
            filled += end - start;
            start = end;
        }
    }
    groups
}

/// Matches every gap of `new` against the unused source, in suffix-array windows of at most
/// `opts.sa_window` bytes, on up to `opts.threads` threads.
fn match_gaps(
    old: &[u8],
    new: &[u8],
    rem: &RemMap,
    gaps: &[Range<usize>],
    opts: &DiffOptions,
    stats: &mut DiffStats,
) -> Vec<(usize, Vec<Op>)> {
    if rem.total == 0 {
        return gaps
            .iter()
            .map(|g| (g.start, vec![Op::Insert { len: g.len() }]))
            .collect();
    }
    let windows = rem.total.div_ceil(opts.sa_window);
    let wlen = rem.total.div_ceil(windows);
    let mut result = Vec::new();
    for (w, group) in split_even(gaps, windows).into_iter().enumerate() {
        let wrange = w * wlen..rem.total.min((w + 1) * wlen);
        let text = rem.text(old, wrange.clone());
        let started = std::time::Instant::now();
        let index = SuffixIndex::build(&text);
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            bytes = text.len(),
            "suffix array built"
        );
        stats.indexed_bytes += text.len() as u64;
        stats.index_heap_bytes = stats.index_heap_bytes.max(index.heap_bytes() as u64);
        let work = split_even(&group, opts.threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = work
                .iter()
                .map(|part| {
                    let index = &index;
                    s.spawn(move || {
                        part.iter()
                            .map(|g| {
                                (
                                    g.start,
                                    match_one(index, new, g, rem, wrange.start, opts.min_gain),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                result.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
            }
        });
    }
    result
}

fn match_one(
    index: &SuffixIndex<'_>,
    new: &[u8],
    gap: &Range<usize>,
    rem: &RemMap,
    base: usize,
    min_gain: usize,
) -> Vec<Op> {
    let mut ops = Vec::new();
    for step in index.match_target(&new[gap.clone()], min_gain) {
        rem.push_add(base + step.add_old, step.add_len, &mut ops);
        if step.insert_len > 0 {
            ops.push(Op::Insert { len: step.insert_len });
        }
    }
    ops
}
