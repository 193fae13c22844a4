//! Second matching pass: bsdiff-style approximate matching over a suffix array of the source.
//!
//! This is Colin Percival's bsdiff scan (2003): find the longest exact match of the current
//! target position in the source, and accept it only when it beats the current alignment by
//! more than 8 bytes; then extend the previous alignment forwards and the new one backwards
//! while at least half of the bytes agree, so that nearly-equal regions become one "add" whose
//! diff bytes are mostly zero (and compress to almost nothing).

/// Longest match the search compares; longer matches are found again at the next step.
const MAX_SEARCH: usize = 1 << 16;
/// Window over which the current alignment is checked before searching for a new one.
const AGREE_WINDOW: usize = 32;
/// Agreeing bytes in that window above which the scan stays on the current alignment.
const AGREE_MIN: usize = 30;
/// Extra gain a new alignment needs, by the distance of the seek to it (`(below, gain)`):
/// nearby realignments (pointer tables shifted by a few entries) are cheap and pay off
/// quickly; far jumps cost 3-4 control bytes that barely compress. Tuned on the corpus of
/// `ota/bench/delta.sh` (shared library, executable, ext4 image).
const SEEK_GAIN: [(usize, isize); 6] = [
    (16, 3),
    (256, 4),
    (2048, 8),
    (1 << 18, 12),
    (1 << 25, 16),
    (usize::MAX, 20),
];
/// Equally long matches examined on each side of the one the binary search lands on.
const TIE_SCAN: usize = 16;
/// Ties are only examined for matches up to this long (longer ones are rarely ambiguous).
const TIE_MAX_LEN: usize = 1024;

/// A suffix array over a source text.
#[derive(Debug)]
pub(crate) struct SuffixIndex<'a> {
    text: &'a [u8],
    sa: Vec<i32>,
    /// `buckets[k]` is the first suffix-array slot whose suffix starts with the two bytes `k`
    /// (a last one-byte suffix `x` counts as `x 0`); it narrows every search to one bucket.
    buckets: Vec<u32>,
}

/// One bsdiff step: add `add_len` bytes from source position `add_old`, then insert `insert_len`
/// new bytes (positions are relative to the indexed text and the matched target slice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) add_old: usize,
    pub(crate) add_len: usize,
    pub(crate) insert_len: usize,
}

impl<'a> SuffixIndex<'a> {
    /// Sorts the suffixes of `text` (which must be shorter than 2 GiB).
    pub(crate) fn build(text: &'a [u8]) -> Self {
        let mut sa = vec![0i32; text.len()];
        if !text.is_empty() {
            divsufsort::sort_in_place(text, &mut sa);
        }
        let mut buckets = vec![0u32; (1 << 16) + 1];
        for i in 0..text.len() {
            buckets[Self::key(text, i) + 1] += 1;
        }
        for k in 1..buckets.len() {
            buckets[k] += buckets[k - 1];
        }
        Self { text, sa, buckets }
    }

    fn key(text: &[u8], i: usize) -> usize {
        (usize::from(text[i]) << 8) | usize::from(text.get(i + 1).copied().unwrap_or(0))
    }

    /// Bytes of memory held by the index.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.sa.len() * 4 + self.buckets.len() * 4
    }

    fn suffix(&self, i: usize) -> &[u8] {
        &self.text[self.sa[i] as usize..]
    }

    /// Longest prefix of `needle` found in the text: `(position, length)`.
    /// Among equally long matches (up to `TIE_SCAN` on each side), the one nearest to `hint`
    /// wins: staying close to the current alignment keeps seeks small and extensions long.
    fn search(&self, needle: &[u8], hint: usize) -> (usize, usize) {
        if self.sa.is_empty() || needle.is_empty() {
            return (0, 0);
        }
        let (mut st, mut en) = (0usize, self.sa.len() - 1);
        if needle.len() >= 2 {
            let k = Self::key(needle, 0);
            let (lo, hi) = (self.buckets[k] as usize, self.buckets[k + 1] as usize);
            if hi > lo {
                (st, en) = (lo, hi - 1);
            }
        }
        while en - st >= 2 {
            let x = st + (en - st) / 2;
            let s = self.suffix(x);
            let n = s.len().min(needle.len());
            if s[..n] < needle[..n] {
                st = x;
            } else {
                en = x;
            }
        }
        let lx = common_prefix(self.suffix(st), needle);
        let ly = common_prefix(self.suffix(en), needle);
        let (best, len) = if lx >= ly { (st, lx) } else { (en, ly) };
        if len == 0 || len > TIE_MAX_LEN {
            return (self.sa[best] as usize, len);
        }
        let ties = (best.saturating_sub(TIE_SCAN)..best)
            .rev()
            .take_while(|&i| common_prefix(self.suffix(i), &needle[..len]) == len)
            .chain(
                (best + 1..self.sa.len().min(best + 1 + TIE_SCAN))
                    .take_while(|&i| common_prefix(self.suffix(i), &needle[..len]) == len),
            );
        let pos = ties
            .map(|i| self.sa[i] as usize)
            .fold(self.sa[best] as usize, |a, b| {
                if b.abs_diff(hint) < a.abs_diff(hint) { b } else { a }
            });
        (pos, len)
    }

    /// Runs the bsdiff scan of `new` against the text, returning steps that rebuild all of `new`.
    /// A match must beat the current alignment by more than `min_gain` bytes to start a new one.
    pub(crate) fn match_target(&self, new: &[u8], min_gain: usize) -> Vec<Step> {
        Scanner {
            old: self.text,
            new,
            idx: self,
            min_gain: min_gain as isize,
            steps: Vec::new(),
            scan: 0,
            len: 0,
            pos: 0,
            lastscan: 0,
            lastpos: 0,
            lastoffset: 0,
        }
        .run()
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n && a[i..i + 8] == b[i..i + 8] {
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

struct Scanner<'s, 'a> {
    old: &'s [u8],
    new: &'s [u8],
    idx: &'s SuffixIndex<'a>,
    min_gain: isize,
    steps: Vec<Step>,
    /// Current target position and the match found there.
    scan: usize,
    len: usize,
    pos: usize,
    /// Where the current alignment started in the target and the source, and its offset.
    lastscan: usize,
    lastpos: usize,
    lastoffset: isize,
}

impl Scanner<'_, '_> {
    fn agrees(&self, new_pos: usize, offset: isize) -> bool {
        let o = new_pos as isize + offset;
        o >= 0 && (o as usize) < self.old.len() && self.old[o as usize] == self.new[new_pos]
    }

    /// How much a new alignment must beat the current one by: `min_gain` plus the cost of the
    /// seek to it, which grows with its distance (`SEEK_GAIN`).
    fn gain_needed(&self, delta: isize) -> isize {
        let d = delta.unsigned_abs();
        let i = SEEK_GAIN
            .iter()
            .position(|&(limit, _)| d < limit)
            .unwrap_or(SEEK_GAIN.len() - 1);
        self.min_gain + SEEK_GAIN[i].1
    }

    /// Whether the alignment `offset` agrees on at least `AGREE_MIN` of the next
    /// `AGREE_WINDOW` bytes from `scan`.
    fn mostly_agrees(&self, scan: usize, offset: isize) -> bool {
        let o = scan as isize + offset;
        if o < 0 || o as usize + AGREE_WINDOW > self.old.len() || scan + AGREE_WINDOW > self.new.len() {
            return false;
        }
        let (a, b) = (
            &self.old[o as usize..o as usize + AGREE_WINDOW],
            &self.new[scan..scan + AGREE_WINDOW],
        );
        a.iter().zip(b).filter(|(x, y)| x == y).count() >= AGREE_MIN
    }

    fn run(mut self) -> Vec<Step> {
        while self.scan < self.new.len() {
            self.scan += self.len;
            let oldscore = self.find_match();
            if self.len as isize != oldscore || self.scan == self.new.len() {
                self.emit();
            }
        }
        self.steps
    }

    /// Advances `scan` to the next position where a match (`pos`, `len`) beats the current
    /// alignment enough to switch, or where the current alignment is the longest match;
    /// returns how many of `len` bytes the current alignment gets right.
    fn find_match(&mut self) -> isize {
        let (new, off) = (self.new, self.lastoffset);
        let mut oldscore = 0isize;
        let mut scsc = self.scan;
        while self.scan < new.len() {
            if self.mostly_agrees(self.scan, off) {
                // Fast path: the current alignment still holds; no search needed here.
                let to = new.len().min(self.scan + AGREE_WINDOW);
                while self.scan < to {
                    oldscore -= isize::from(self.scan < scsc && self.agrees(self.scan, off));
                    self.scan += 1;
                }
                scsc = scsc.max(self.scan);
                self.len = 0;
                continue;
            }
            let (scan, end) = (self.scan, new.len().min(self.scan + MAX_SEARCH));
            (self.pos, self.len) = self
                .idx
                .search(&new[scan..end], (scan as isize + off).max(0) as usize);
            while scsc < scan + self.len {
                oldscore += isize::from(self.agrees(scsc, off));
                scsc += 1;
            }
            let len = self.len as isize;
            if (len == oldscore && len != 0)
                || len > oldscore + self.gain_needed(self.pos as isize - (scan as isize + off))
            {
                break;
            }
            oldscore -= isize::from(self.agrees(scan, off));
            self.scan += 1;
        }
        oldscore
    }

    /// Emits the step from the previous alignment to the new one: the previous alignment
    /// extended forwards as an add, the bytes up to the new one's backward extension as an insert.
    fn emit(&mut self) {
        let (scan, pos, lastscan, lastpos) = (self.scan, self.pos, self.lastscan, self.lastpos);
        let mut lenf = self.extend_forward(lastscan, lastpos, scan);
        let mut lenb = if scan < self.new.len() {
            self.extend_backward(lastscan, scan, pos)
        } else {
            0
        };
        if lastscan + lenf > scan - lenb {
            (lenf, lenb) = self.split_overlap(lastscan, lastpos, lenf, scan, pos, lenb);
        }
        self.steps.push(Step {
            add_old: lastpos,
            add_len: lenf,
            insert_len: (scan - lenb) - (lastscan + lenf),
        });
        self.lastscan = scan - lenb;
        self.lastpos = pos - lenb;
        self.lastoffset = pos as isize - scan as isize;
    }

    /// Longest forward extension of the previous alignment where matches outnumber mismatches.
    fn extend_forward(&self, lastscan: usize, lastpos: usize, scan: usize) -> usize {
        let (mut s, mut best, mut lenf) = (0isize, 0isize, 0usize);
        let mut i = 0;
        while lastscan + i < scan && lastpos + i < self.old.len() {
            s += isize::from(self.old[lastpos + i] == self.new[lastscan + i]);
            i += 1;
            if s * 2 - i as isize > best * 2 - lenf as isize {
                best = s;
                lenf = i;
            }
        }
        lenf
    }

    /// Longest backward extension of the new alignment where matches outnumber mismatches.
    fn extend_backward(&self, lastscan: usize, scan: usize, pos: usize) -> usize {
        let (mut s, mut best, mut lenb) = (0isize, 0isize, 0usize);
        let mut i = 1;
        while scan >= lastscan + i && pos >= i {
            s += isize::from(self.old[pos - i] == self.new[scan - i]);
            if s * 2 - i as isize > best * 2 - lenb as isize {
                best = s;
                lenb = i;
            }
            i += 1;
        }
        lenb
    }

    /// Where the two extensions overlap, gives each byte to the alignment that matches it.
    fn split_overlap(
        &self,
        lastscan: usize,
        lastpos: usize,
        lenf: usize,
        scan: usize,
        pos: usize,
        lenb: usize,
    ) -> (usize, usize) {
        let overlap = (lastscan + lenf) - (scan - lenb);
        let (mut s, mut best, mut lens) = (0isize, 0isize, 0usize);
        for i in 0..overlap {
            s += isize::from(
                self.new[lastscan + lenf - overlap + i] == self.old[lastpos + lenf - overlap + i],
            );
            s -= isize::from(self.new[scan - lenb + i] == self.old[pos - lenb + i]);
            if s > best {
                best = s;
                lens = i + 1;
            }
        }
        (lenf + lens - overlap, lenb - lens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rebuild(old: &[u8], new: &[u8], steps: &[Step]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in steps {
            let n = out.len();
            for i in 0..s.add_len {
                out.push(old[s.add_old + i].wrapping_add(new[n + i].wrapping_sub(old[s.add_old + i])));
            }
            let n = out.len();
            out.extend_from_slice(&new[n..n + s.insert_len]);
        }
        out
    }

    #[test]
    fn steps_cover_the_target_exactly() {
        let old = b"the quick brown fox jumps over the lazy dog, again and again and again".repeat(20);
        let mut new = old.clone();
        new[100] ^= 1;
        new.splice(300..300, b"INSERTED TEXT".iter().copied());
        new.drain(600..650);
        let idx = SuffixIndex::build(&old);
        let steps = idx.match_target(&new, 8);
        assert_eq!(rebuild(&old, &new, &steps), new);
        let inserted: usize = steps.iter().map(|s| s.insert_len).sum();
        assert!(inserted < 40, "mostly matched, inserted {inserted}");
    }
}
