#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests: `apply(diff(a, b), a) == b` on random and structured inputs.

use halyard_ota::delta::{self, BlockPass, Codec, DiffOptions, Transform};
use proptest::prelude::*;

fn round_trip_with(old: &[u8], new: &[u8], opts: &DiffOptions) -> usize {
    let mut patch = Vec::new();
    let stats = delta::diff(old, new, opts, &mut patch).unwrap();
    assert_eq!(stats.patch_bytes as usize, patch.len());
    let mut out = Vec::new();
    let applied = delta::apply(old, patch.as_slice(), &mut out).unwrap();
    assert_eq!(out, new);
    assert_eq!(applied.target_bytes as usize, new.len());
    patch.len()
}

fn small_opts() -> DiffOptions {
    DiffOptions {
        level: 3,
        segment_cap: 4096,
        block_size: 64,
        ..DiffOptions::default()
    }
}

/// Round trips `old -> new` with each codec choice (all zstd; LZMA2 diff and extra streams;
/// all LZMA2) and several matching settings; returns the last patch's size.
fn round_trip(old: &[u8], new: &[u8]) -> usize {
    let mut size = 0;
    for codecs in [
        [Codec::Zstd; 3],
        [Codec::Zstd, Codec::Lzma2, Codec::Lzma2],
        [Codec::Lzma2; 3],
    ] {
        size = round_trip_codecs(old, new, codecs);
    }
    size
}

fn round_trip_codecs(old: &[u8], new: &[u8], codecs: [Codec; 3]) -> usize {
    round_trip_with(
        old,
        new,
        &DiffOptions {
            level: 3,
            codecs,
            ..DiffOptions::default()
        },
    );
    let small_opts = || DiffOptions {
        codecs,
        ..small_opts()
    };
    let plain = DiffOptions {
        transform: Transform::None,
        ..small_opts()
    };
    round_trip_with(old, new, &plain);
    for pass in [BlockPass::Always, BlockPass::Never] {
        round_trip_with(
            old,
            new,
            &DiffOptions {
                block_pass: pass,
                ..small_opts()
            },
        );
    }
    round_trip_with(
        old,
        new,
        &DiffOptions {
            sa_window: 1 << 16,
            block_pass: BlockPass::Always,
            ..small_opts()
        },
    )
}

/// Deterministic pseudo-random bytes (xorshift), so big inputs stay cheap to make.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Edit {
    Insert { at: usize, data: Vec<u8> },
    Delete { at: usize, len: usize },
    Flip { at: usize },
    Move { from: usize, len: usize, to: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(at, data)| Edit::Insert { at, data }),
        (any::<usize>(), 0usize..2000).prop_map(|(at, len)| Edit::Delete { at, len }),
        any::<usize>().prop_map(|at| Edit::Flip { at }),
        (any::<usize>(), 0usize..5000, any::<usize>()).prop_map(|(from, len, to)| Edit::Move {
            from,
            len,
            to
        }),
    ]
}

fn apply_edits(base: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = base.to_vec();
    for e in edits {
        let n = v.len();
        match e {
            Edit::Insert { at, data } => {
                let at = at % (n + 1);
                v.splice(at..at, data.iter().copied());
            }
            Edit::Delete { at, len } => {
                let at = at % (n + 1);
                v.drain(at..(at + len).min(n));
            }
            Edit::Flip { at } if n > 0 => v[at % n] ^= 0x5a,
            Edit::Move { from, len, to } if n > 0 => {
                let from = from % n;
                let block: Vec<u8> = v.drain(from..(from + len).min(n)).collect();
                let to = to % (v.len() + 1);
                v.splice(to..to, block);
            }
            _ => {}
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_pairs(old in proptest::collection::vec(any::<u8>(), 0..3000),
                    new in proptest::collection::vec(any::<u8>(), 0..3000)) {
        round_trip(&old, &new);
    }

    #[test]
    fn edited_pairs(len in 0usize..40_000, seed in any::<u64>(), text in any::<bool>(),
                    edits in proptest::collection::vec(edit(), 0..12)) {
        let base = if text { b"fn main() { println!(\"hello\"); }\n".repeat(len / 32 + 1) } else { noise(len, seed) };
        let new = apply_edits(&base, &edits);
        round_trip(&base, &new);
    }

    #[test]
    fn shared_prefix(prefix in proptest::collection::vec(any::<u8>(), 0..5000),
                     a in proptest::collection::vec(any::<u8>(), 0..500),
                     b in proptest::collection::vec(any::<u8>(), 0..500)) {
        let old = [prefix.as_slice(), &a].concat();
        let new = [prefix.as_slice(), &b].concat();
        round_trip(&old, &new);
    }
}

#[test]
fn empty_inputs() {
    round_trip(b"", b"");
    round_trip(b"", b"only new");
    round_trip(b"only old", b"");
}

#[test]
fn small_edits_in_a_big_buffer_give_a_small_patch() {
    let old = noise(3 << 20, 7);
    let mut new = old.clone();
    for i in 0..50 {
        new[i * 60_013 + 11] ^= 0xff;
    }
    new.splice(1_000_000..1_000_000, noise(1000, 9));
    new.drain(2_000_000..2_004_096);
    let size = round_trip_with(&old, &new, &DiffOptions::default());
    assert!(size < 4000, "patch is {size} bytes");
    let size = round_trip_with(
        &old,
        &new,
        &DiffOptions {
            block_pass: BlockPass::Always,
            ..DiffOptions::default()
        },
    );
    assert!(size < 4000, "patch with block pass is {size} bytes");
}

#[test]
fn identical_image_is_a_tiny_patch_and_moved_blocks_are_found() {
    let old = noise(2 << 20, 3);
    assert!(round_trip_with(&old, &old, &DiffOptions::default()) < 300);
    let mut new = old[1 << 20..].to_vec();
    new.extend_from_slice(&old[..1 << 20]);
    let opts = DiffOptions {
        block_pass: BlockPass::Always,
        ..DiffOptions::default()
    };
    assert!(round_trip_with(&old, &new, &opts) < 300);
}

#[test]
fn multi_segment_and_multi_window_patches_round_trip() {
    let old = noise(600_000, 5);
    let mut new = apply_edits(
        &old,
        &[Edit::Move {
            from: 1000,
            len: 100_000,
            to: 400_000,
        }],
    );
    new.extend(noise(300_000, 6));
    for i in (0..new.len()).step_by(997) {
        new[i] = new[i].wrapping_add(1);
    }
    for codecs in [[Codec::Zstd; 3], [Codec::Lzma2; 3]] {
        let opts = DiffOptions {
            segment_cap: 4096,
            sa_window: 1 << 17,
            codecs,
            ..DiffOptions::default()
        };
        round_trip_with(&old, &new, &opts);
    }
}

#[test]
fn large_streams_compressed_as_several_frames_round_trip() {
    // Over 8 MiB of diff bytes: the encoder compresses the diff stream in two parts (two zstd
    // frames, or two LZMA2 runs each starting with a dictionary reset, on two threads) that the
    // decoder must read as one stream.
    let old = noise(9 << 20, 11);
    let mut new = old.clone();
    for i in (0..new.len()).step_by(16) {
        new[i] = new[i].wrapping_add(3);
    }
    for codecs in [[Codec::Zstd; 3], [Codec::Zstd, Codec::Lzma2, Codec::Lzma2]] {
        let opts = DiffOptions {
            level: 1,
            codecs,
            lzma: delta::Lzma2Tuning {
                preset: 1,
                extreme: false,
                ..delta::Lzma2Tuning::default()
            },
            ..DiffOptions::default()
        };
        round_trip_with(&old, &new, &opts);
    }
}

#[test]
fn x86_displacements_across_chunk_boundaries_round_trip() {
    // Dense call/jcc/RIP-relative patterns in a source larger than apply's 64 KiB chunks, so
    // instructions straddle chunk ends; every displacement changes by a small amount.
    let mut old = noise(300_000, 13);
    for i in (0..old.len() - 8).step_by(5) {
        match (i / 5) % 3 {
            0 => old[i] = 0xe8,
            1 => old[i..i + 2].copy_from_slice(&[0x0f, 0x84]),
            _ => old[i..i + 3].copy_from_slice(&[0x48, 0x8d, 0x05]),
        }
    }
    let mut new = old.clone();
    for i in (0..new.len() - 8).step_by(5) {
        new[i + 3] = new[i + 3].wrapping_add(0xf0);
    }
    for transform in [Transform::X86, Transform::None] {
        round_trip_with(
            &old,
            &new,
            &DiffOptions {
                transform,
                ..DiffOptions::default()
            },
        );
    }
}
