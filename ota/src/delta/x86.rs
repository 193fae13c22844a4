//! Optional transform of add records for x86 code: 32-bit relative displacements (call/jmp
//! rel32, jcc rel32, RIP-relative operands with a REX prefix) found in the *source* bytes are
//! subtracted as 32-bit numbers instead of byte by byte.
//!
//! When code moves, a displacement changes by a small amount; byte-wise subtraction turns a
//! carry into a second changed byte, 32-bit subtraction does not, so the diff stream gets more
//! regular. Instructions are recognised on source bytes only, so `apply` finds the same ones.

/// Longest instruction the walker recognises (REX + opcode + ModRM + disp32).
pub(crate) const MAX_INSN: usize = 7;

/// One-byte opcodes whose ModRM may address RIP + disp32 (mov, lea, alu ops, test, movsxd,
/// indirect call/jmp, immediate forms).
const RIP_OPS: [u8; 29] = [
    0x8b, 0x8d, 0x89, 0x3b, 0x39, 0x03, 0x01, 0x2b, 0x29, 0x33, 0x31, 0x0b, 0x09, 0x23, 0x21, 0x85, 0x63,
    0xff, 0xc7, 0x83, 0x81, 0x80, 0xc6, 0x88, 0x8a, 0x84, 0x38, 0x3a, 0xf7,
];

/// `RIP_OPS` as a lookup table (a slice search here cost a fifth of `apply`'s time).
const IS_RIP_OP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < RIP_OPS.len() {
        t[RIP_OPS[i] as usize] = true;
        i += 1;
    }
    t
};

/// Bytes that can start a recognised instruction (a quick filter before `insn_at`).
const STARTS: [bool; 256] = {
    let mut t = IS_RIP_OP;
    let mut b = 0x40;
    while b <= 0x4f {
        t[b] = true;
        b += 1;
    }
    t[0xe8] = true;
    t[0xe9] = true;
    t[0x0f] = true;
    t
};

/// Whether a ModRM byte addresses RIP + disp32 (mod 00, r/m 101).
fn rip(modrm: u8) -> bool {
    modrm & 0xc7 == 0x05
}

/// `(offset of the disp32 field, bytes up to its end)` when one of the recognised instructions
/// starts at `s[0]` and its displacement fits in `s`.
fn insn_at(s: &[u8]) -> Option<(usize, usize)> {
    match *s {
        [0xe8 | 0xe9, _, _, _, _, ..] => Some((1, 5)),
        [0x0f, 0x80..=0x8f, _, _, _, _, ..] => Some((2, 6)),
        [0x40..=0x4f, op, m, _, _, _, _, ..] if IS_RIP_OP[usize::from(op)] && rip(m) => Some((3, 7)),
        [0x0f, _, m, _, _, _, _, ..] if rip(m) => Some((3, 7)),
        [op, m, _, _, _, _, ..] if IS_RIP_OP[usize::from(op)] && rip(m) => Some((2, 6)),
        _ => None,
    }
}

/// Positions classified per block by the branch-free pass of `walk`.
const BLOCK: usize = 256;

/// Property bits of one byte (`class`): which role it can play in a recognised instruction.
const C_CALL: u8 = 1; // e8 / e9: call / jmp rel32
const C_0F: u8 = 2; // two-byte opcode escape
const C_REX: u8 = 4; // 40..4f
const C_OP: u8 = 8; // one of `RIP_OPS`
const C_RIP: u8 = 16; // ModRM with mod 00, r/m 101
const C_JCC: u8 = 32; // 80..8f: second byte of jcc rel32

/// `class` without tables or branches, so the compiler vectorises the loop that calls it. The
/// opcode test spells out `RIP_OPS` by rows of the high nibble (a test checks all 256 bytes).
fn class(x: u8) -> u8 {
    let is = |b: bool| u8::from(b);
    let op = is(x & 0xd5 == 0x01) // 01 03 09 0b 21 23 29 2b
        | is(x & 0xf5 == 0x31) // 31 33 39 3b
        | is(x & 0xfc == 0x38) // 38 39 3a 3b
        | is(x == 0x63)
        | (is(x & 0xfc == 0x80) & is(x != 0x82)) // 80 81 83
        | is(x & 0xfe == 0x84) // 84 85
        | is(x & 0xfc == 0x88) // 88 89 8a 8b
        | is(x == 0x8d)
        | is(x & 0xfe == 0xc6) // c6 c7
        | is(x & 0xf7 == 0xf7); // f7 ff
    (is(x & 0xfe == 0xe8) * C_CALL)
        | (is(x == 0x0f) * C_0F)
        | (is(x & 0xf0 == 0x40) * C_REX)
        | (op * C_OP)
        | (is(rip(x)) * C_RIP)
        | (is(x & 0xf0 == 0x80) * C_JCC)
}

/// 1 when a recognised instruction starts at a byte of class `c0` followed by classes `c1`,
/// `c2` (at least `MAX_INSN` bytes visible): `insn_at` returns `Some` exactly then.
fn starts(c0: u8, c1: u8, c2: u8) -> u8 {
    let bit = |c: u8, k: u8| u8::from(c & k != 0);
    bit(c0, C_CALL)
        | (bit(c0, C_0F) & (bit(c1, C_JCC) | bit(c2, C_RIP)))
        | (bit(c0, C_REX) & bit(c1, C_OP) & bit(c2, C_RIP))
        | (bit(c0, C_OP) & bit(c1, C_RIP))
}

/// Walks the instructions of `src` from its start, calling `field` with the position of each
/// displacement. When `complete` is false (more bytes of the record follow `src`), it stops at
/// the first position closer than `MAX_INSN` to the end, so no decision depends on bytes it
/// cannot see; it returns how many bytes it covered (the caller resumes there).
///
/// Positions with a whole instruction's worth of bytes after them are classified a block at a
/// time without branches; the walk then only stops where an instruction starts (a position
/// that starts none advances by one, so skipping it is the same walk).
pub(crate) fn walk(src: &[u8], complete: bool, mut field: impl FnMut(usize)) -> usize {
    let fast = src.len().saturating_sub(MAX_INSN - 1);
    let mut j = 0;
    let mut cls = [0u8; BLOCK + 2];
    let mut hit = [0u8; BLOCK];
    while j < fast {
        let n = (fast - j).min(BLOCK);
        for (c, &b) in cls[..n + 2].iter_mut().zip(&src[j..j + n + 2]) {
            *c = class(b);
        }
        for (h, w) in hit[..n].iter_mut().zip(cls[..n + 2].windows(3)) {
            *h = starts(w[0], w[1], w[2]);
        }
        let mut i = next_hit(&hit[..n], 0);
        while i < n {
            let (off, len) = insn_at(&src[j + i..]).unwrap_or((0, 1));
            if len > 1 {
                field(j + i + off);
            }
            i = next_hit(&hit[..n], i + len);
        }
        j += i;
    }
    if !complete {
        return j.min(src.len());
    }
    walk_tail(src, j, field)
}

/// Index of the first nonzero byte of `hit` at or after `from` (`from` itself when past the
/// end), skipping eight zero bytes at a time.
fn next_hit(hit: &[u8], mut from: usize) -> usize {
    while let Some(w) = hit.get(from..from + 8) {
        let word = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if word != 0 {
            return from + (word.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while from < hit.len() && hit[from] == 0 {
        from += 1;
    }
    from
}

/// The byte-at-a-time walk of the last positions of a complete record.
fn walk_tail(src: &[u8], mut j: usize, mut field: impl FnMut(usize)) -> usize {
    while j < src.len() {
        if !STARTS[usize::from(src[j])] {
            j += 1;
            continue;
        }
        match insn_at(&src[j..]) {
            Some((off, len)) => {
                field(j + off);
                j += len;
            }
            None => j += 1,
        }
    }
    src.len()
}

fn le32(b: &[u8], p: usize) -> u32 {
    u32::from_le_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]])
}

/// Diff bytes of one whole add record (`out` gets `src.len()` bytes appended).
pub(crate) fn encode(src: &[u8], tgt: &[u8], out: &mut Vec<u8>) {
    let base = out.len();
    out.extend(src.iter().zip(tgt).map(|(s, t)| t.wrapping_sub(*s)));
    walk(src, true, |p| {
        let d = le32(tgt, p).wrapping_sub(le32(src, p));
        out[base + p..base + p + 4].copy_from_slice(&d.to_le_bytes());
    });
}

/// Rebuilds target bytes in `src[..diff.len()]` from source bytes and diff bytes; `fields`
/// are the displacement positions `walk` found in that range.
pub(crate) fn decode(src: &mut [u8], diff: &mut [u8], fields: &[u32]) {
    for &p in fields {
        let p = p as usize;
        let t = le32(src, p).wrapping_add(le32(diff, p));
        src[p..p + 4].copy_from_slice(&t.to_le_bytes());
        diff[p..p + 4].fill(0);
    }
    src.iter_mut()
        .zip(diff.iter())
        .for_each(|(s, d)| *s = s.wrapping_add(*d));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time walk `walk` must reproduce exactly (the format depends on it).
    fn reference_walk(src: &[u8], complete: bool) -> (Vec<usize>, usize) {
        let (mut fields, mut j) = (Vec::new(), 0);
        while j < src.len() {
            if !complete && j + MAX_INSN > src.len() {
                return (fields, j);
            }
            match insn_at(&src[j..]) {
                Some((off, len)) => {
                    fields.push(j + off);
                    j += len;
                }
                None => j += 1,
            }
        }
        (fields, src.len())
    }

    #[test]
    fn byte_classes_match_the_opcode_tables() {
        for x in 0..=255u8 {
            let c = class(x);
            assert_eq!(c & C_OP != 0, IS_RIP_OP[usize::from(x)], "{x:#04x}");
            assert_eq!(c & C_CALL != 0, x == 0xe8 || x == 0xe9, "{x:#04x}");
            assert_eq!(c & C_0F != 0, x == 0x0f, "{x:#04x}");
            assert_eq!(c & C_REX != 0, (0x40..=0x4f).contains(&x), "{x:#04x}");
            assert_eq!(c & C_RIP != 0, rip(x), "{x:#04x}");
            assert_eq!(c & C_JCC != 0, (0x80..=0x8f).contains(&x), "{x:#04x}");
        }
    }

    #[test]
    fn block_walk_equals_byte_walk() {
        let mut state = 0x1234_5678_9abc_def0_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Bytes drawn mostly from the instruction alphabet, so every pattern and overlap occurs.
        let alphabet = [
            0xe8, 0xe9, 0x0f, 0x48, 0x4c, 0x8b, 0x8d, 0x85, 0x05, 0x15, 0x80, 0x8f, 0xff, 0x00,
        ];
        for round in 0..200 {
            let len = (next() % 3000) as usize;
            let src: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if round % 2 == 0 || r % 4 == 0 {
                        r as u8 >> 3
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            for complete in [true, false] {
                let mut fields = Vec::new();
                let n = walk(&src, complete, |p| fields.push(p));
                assert_eq!(
                    (fields, n),
                    reference_walk(&src, complete),
                    "round {round} complete {complete}"
                );
            }
        }
    }

    #[test]
    fn chunked_walk_agrees_with_whole_walk_and_decode_inverts_encode() {
        let mut src: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        for i in (0..4990).step_by(37) {
            src[i] = [0xe8, 0x0f, 0x48][i % 3];
            src[i + 1] = [0x10, 0x85, 0x8d][i % 3];
            src[i + 2] = 0x05;
        }
        let tgt: Vec<u8> = src
            .iter()
            .enumerate()
            .map(|(i, b)| b.wrapping_add((i % 7 == 0) as u8 * 3))
            .collect();
        let mut diff = Vec::new();
        encode(&src, &tgt, &mut diff);
        let (mut pos, mut rebuilt) = (0, Vec::new());
        while pos < src.len() {
            let end = src.len().min(pos + 300);
            let mut fields = Vec::new();
            let n = walk(&src[pos..end], end == src.len(), |p| fields.push(p as u32));
            let (mut s, mut d) = (src[pos..pos + n].to_vec(), diff[pos..pos + n].to_vec());
            decode(&mut s, &mut d, &fields);
            rebuilt.extend_from_slice(&s);
            pos += n;
        }
        assert_eq!(rebuilt, tgt);
    }
}
