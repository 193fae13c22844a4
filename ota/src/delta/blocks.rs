//! First matching pass: identical aligned blocks of `old` and `new` become exact copies.
//!
//! Filesystem images keep file contents block-aligned, so most unchanged data of an image pair
//! sits in identical 4 KiB blocks. Hashing `old`'s aligned blocks and looking up `new`'s aligned
//! blocks finds them in linear time, before (and instead of) the suffix array.

use std::collections::HashMap;

/// An exact match: `new[new..new + len] == old[old..old + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) new: usize,
    pub(crate) old: usize,
    pub(crate) len: usize,
}

fn block_hash(block: &[u8]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3_u64;
    let mut words = block.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h
}

/// Finds runs of identical aligned blocks, sorted by `new` and non-overlapping, each extended
/// byte-wise into its unmatched neighbourhood.
pub(crate) fn find_runs(old: &[u8], new: &[u8], bs: usize) -> Vec<Run> {
    if bs == 0 || old.len() < bs || new.len() < bs {
        return Vec::new();
    }
    let mut table: HashMap<u64, usize> = HashMap::with_capacity(old.len() / bs);
    for (i, block) in old.chunks_exact(bs).enumerate() {
        table.entry(block_hash(block)).or_insert(i * bs);
    }
    let mut runs: Vec<Run> = Vec::new();
    for (j, block) in new.chunks_exact(bs).enumerate() {
        let n = j * bs;
        // Prefer continuing the current run: it keeps the source cursor moving forward.
        if let Some(last) = runs.last_mut()
            && last.new + last.len == n
            && old.get(last.old + last.len..last.old + last.len + bs) == Some(block)
        {
            last.len += bs;
            continue;
        }
        if let Some(&o) = table.get(&block_hash(block))
            && &old[o..o + bs] == block
        {
            runs.push(Run {
                new: n,
                old: o,
                len: bs,
            });
        }
    }
    extend_runs(old, new, &mut runs);
    runs
}

/// Grows each run byte by byte backwards and forwards while bytes agree, without overlapping
/// its neighbours in `new`.
fn extend_runs(old: &[u8], new: &[u8], runs: &mut [Run]) {
    let mut prev_end = 0;
    for i in 0..runs.len() {
        let next_start = runs.get(i + 1).map_or(new.len(), |r| r.new);
        let r = &mut runs[i];
        while r.new > prev_end && r.old > 0 && old[r.old - 1] == new[r.new - 1] {
            r.new -= 1;
            r.old -= 1;
            r.len += 1;
        }
        while r.new + r.len < next_start
            && r.old + r.len < old.len()
            && old[r.old + r.len] == new[r.new + r.len]
        {
            r.len += 1;
        }
        prev_end = r.new + r.len;
    }
}

/// The parts of `old` no run copies from, as `(old_start, len)` pieces in source order.
pub(crate) fn unused_pieces(old_len: usize, runs: &[Run]) -> Vec<(usize, usize)> {
    let mut used: Vec<(usize, usize)> = runs.iter().map(|r| (r.old, r.old + r.len)).collect();
    used.sort_unstable();
    let mut pieces = Vec::new();
    let mut pos = 0;
    for (s, e) in used {
        if s > pos {
            pieces.push((pos, s - pos));
        }
        pos = pos.max(e);
    }
    if pos < old_len {
        pieces.push((pos, old_len - pos));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_moved_blocks_and_extends_them() {
        let a: Vec<u8> = (0..64 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut b = a[32 * 1024..].to_vec();
        b.extend_from_slice(&a[..32 * 1024]);
        let runs = find_runs(&a, &b, 4096);
        for r in &runs {
            assert_eq!(a[r.old..r.old + r.len], b[r.new..r.new + r.len]);
        }
        let covered: usize = runs.iter().map(|r| r.len).sum();
        assert_eq!(covered, b.len());
        assert!(unused_pieces(a.len(), &runs).is_empty());
    }
}
