#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Per-stream codecs: version-1 (all zstd) patches still apply, codec bytes are validated, and
//! truncated or corrupt LZMA2 chunks are errors, never panics or wrong targets.

use halyard_ota::delta::{self, Codec, DeltaError, DiffOptions};

const LZMA: [Codec; 3] = [Codec::Zstd, Codec::Lzma2, Codec::Lzma2];

fn pair() -> (Vec<u8>, Vec<u8>) {
    let old: Vec<u8> = (0..150_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut new = old.clone();
    new.splice(40_000..40_000, (0..3000u32).map(|i| (i * 7) as u8));
    for i in (60_000..140_000).step_by(101) {
        new[i] = new[i].wrapping_add(5);
    }
    (old, new)
}

fn patch_of(old: &[u8], new: &[u8], codecs: [Codec; 3]) -> Vec<u8> {
    let mut patch = Vec::new();
    let opts = DiffOptions {
        codecs,
        ..DiffOptions::default()
    };
    delta::diff(old, new, &opts, &mut patch).unwrap();
    patch
}

fn apply(old: &[u8], patch: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let mut out = Vec::new();
    delta::apply(old, patch, &mut out).map(|_| out)
}

fn varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0;
    for shift in (0..).step_by(7) {
        let byte = b[*pos];
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
    }
    unreachable!()
}

/// Offsets of the first segment's length fields and chunks: `(framing_start, [(raw, comp); 3], chunks_start)`.
fn first_segment(patch: &[u8]) -> (usize, [(u64, u64); 3], usize) {
    let start = delta::HEADER_LEN;
    assert_eq!(patch[start], b'S');
    let mut pos = start + 1;
    let mut lens = [(0, 0); 3];
    for l in &mut lens {
        *l = (varint(patch, &mut pos), varint(patch, &mut pos));
    }
    (start, lens, pos)
}

#[test]
fn header_records_the_codec_of_each_stream() {
    let (old, new) = pair();
    let patch = patch_of(&old, &new, LZMA);
    assert_eq!(patch[8], delta::VERSION);
    assert_eq!(&patch[97..100], &[0, 1, 1]);
    let h = delta::read_header(&mut patch.as_slice()).unwrap();
    assert_eq!(h.codecs, LZMA);
    assert_eq!(apply(&old, &patch).unwrap(), new);
    let zstd = patch_of(&old, &new, [Codec::Zstd; 3]);
    assert_eq!(&zstd[97..100], &[0, 0, 0]);
}

#[test]
fn version_one_zstd_patches_still_apply() {
    let (old, new) = pair();
    let mut patch = patch_of(&old, &new, [Codec::Zstd; 3]);
    patch[8] = delta::VERSION_ZSTD_ONLY;
    assert_eq!(apply(&old, &patch).unwrap(), new);
    // Version 1 had no codec bytes: a non-zero byte there is corrupt, not LZMA2.
    let mut lzma = patch_of(&old, &new, LZMA);
    lzma[8] = delta::VERSION_ZSTD_ONLY;
    assert!(matches!(apply(&old, &lzma), Err(DeltaError::Corrupt { .. })));
}

#[test]
fn unknown_codecs_and_out_of_range_dictionaries_are_refused() {
    let (old, new) = pair();
    let patch = patch_of(&old, &new, LZMA);
    let mut bad = patch.clone();
    bad[98] = 7;
    let err = apply(&old, &bad).unwrap_err();
    assert!(
        matches!(err, DeltaError::Corrupt { what } if what.contains("codec")),
        "{err}"
    );
    // LZMA2 dictionaries start at 4 KiB (log 12), zstd windows at 1 KiB (log 10).
    let mut bad = patch.clone();
    bad[10] = 11;
    assert!(matches!(apply(&old, &bad), Err(DeltaError::Corrupt { .. })));
    let mut bad = patch;
    bad[10] = 24;
    assert!(matches!(apply(&old, &bad), Err(DeltaError::Corrupt { .. })));
}

#[test]
fn truncated_lzma_chunks_are_errors() {
    let (old, new) = pair();
    let patch = patch_of(&old, &new, LZMA);
    let (start, lens, chunks) = first_segment(&patch);
    let (diff_raw, diff_comp) = lens[1];
    assert!(
        diff_raw > 0 && diff_comp > 8,
        "the pair must have an LZMA2 diff chunk"
    );
    let diff_at = chunks + lens[0].1 as usize;
    // Cut the diff chunk short and re-frame the segment so the framing itself is consistent.
    for cut in [1u64, 2, diff_comp / 2, diff_comp - 1] {
        let mut bad = patch[..start].to_vec();
        bad.push(b'S');
        for (k, &(raw, comp)) in lens.iter().enumerate() {
            let comp = if k == 1 { comp - cut } else { comp };
            for v in [raw, comp] {
                let mut v = v;
                while v >= 0x80 {
                    bad.push(v as u8 | 0x80);
                    v >>= 7;
                }
                bad.push(v as u8);
            }
        }
        bad.extend_from_slice(&patch[chunks..diff_at + (diff_comp - cut) as usize]);
        bad.extend_from_slice(&patch[diff_at + diff_comp as usize..]);
        let err = apply(&old, &bad).unwrap_err();
        assert!(
            matches!(err, DeltaError::Corrupt { .. } | DeltaError::Truncated { .. }),
            "cut {cut}: {err}"
        );
    }
    // And the patch cut anywhere inside the LZMA2 chunk.
    for end in diff_at..diff_at + diff_comp as usize {
        let err = apply(&old, &patch[..end]).unwrap_err();
        assert!(matches!(err, DeltaError::Truncated { .. }), "end {end}: {err}");
    }
}

#[test]
fn corrupt_lzma_chunks_are_errors_or_the_right_target() {
    let (old, new) = pair();
    let patch = patch_of(&old, &new, LZMA);
    let (_, lens, chunks) = first_segment(&patch);
    let diff_at = chunks + lens[0].1 as usize;
    // An LZMA2 end marker, an invalid control byte and a chunk without a dictionary reset.
    for control in [0x00u8, 0x03, 0x80, 0xa0] {
        let mut bad = patch.clone();
        bad[diff_at] = control;
        let err = apply(&old, &bad).unwrap_err();
        assert!(
            matches!(err, DeltaError::Corrupt { .. }),
            "control {control:#x}: {err}"
        );
    }
    for i in diff_at..diff_at + lens[1].1 as usize {
        for bit in [0x01u8, 0x10, 0x80] {
            let mut bad = patch.clone();
            bad[i] ^= bit;
            if let Ok(out) = apply(&old, &bad) {
                assert_eq!(out, new, "flip of byte {i} bit {bit:#x} produced a wrong target");
            }
        }
    }
}
