#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Rejection of bad patches and wrong sources: every case is a specific error, never a panic.

use halyard_ota::delta::{self, ApplyOptions, Codec, DeltaError, DiffOptions, SourceCheck};

/// Every test runs on an all-zstd patch and on one with LZMA2 diff and extra streams.
const CODECS: [[Codec; 3]; 2] = [[Codec::Zstd; 3], [Codec::Zstd, Codec::Lzma2, Codec::Lzma2]];

fn pair() -> (Vec<u8>, Vec<u8>) {
    let old: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut new = old.clone();
    new.splice(
        50_000..50_000,
        b"some inserted bytes that are new".iter().copied(),
    );
    new[120_000] ^= 0x33;
    (old, new)
}

fn patch_of(old: &[u8], new: &[u8], codecs: [Codec; 3]) -> Vec<u8> {
    let mut patch = Vec::new();
    delta::diff(
        old,
        new,
        &DiffOptions {
            segment_cap: 4096,
            codecs,
            ..DiffOptions::default()
        },
        &mut patch,
    )
    .unwrap();
    patch
}

fn apply(old: &[u8], patch: &[u8]) -> Result<Vec<u8>, DeltaError> {
    let mut out = Vec::new();
    delta::apply(old, patch, &mut out).map(|_| out)
}

#[test]
fn header_fields_are_readable() {
    for codecs in CODECS {
        let (old, new) = pair();
        let patch = patch_of(&old, &new, codecs);
        let h = delta::read_header(&mut patch.as_slice()).unwrap();
        assert_eq!(h.source_size, old.len() as u64);
        assert_eq!(h.target_size, new.len() as u64);
        assert_eq!(apply(&old, &patch).unwrap(), new);
    }
}

#[test]
fn bad_magic_and_version() {
    for codecs in CODECS {
        let (old, new) = pair();
        let mut patch = patch_of(&old, &new, codecs);
        patch[8] = 9;
        assert!(matches!(
            apply(&old, &patch),
            Err(DeltaError::UnsupportedVersion { version: 9 })
        ));
        patch[0] = b'X';
        assert!(matches!(apply(&old, &patch), Err(DeltaError::BadMagic)));
        assert!(matches!(apply(&old, b"short"), Err(DeltaError::Truncated { .. })));
    }
}

#[test]
fn every_truncation_is_an_error() {
    for codecs in CODECS {
        let (old, new) = pair();
        let patch = patch_of(&old, &new, codecs);
        for cut in (0..patch.len()).step_by(7).chain([patch.len() - 1]) {
            let err = apply(&old, &patch[..cut]).unwrap_err();
            assert!(
                matches!(err, DeltaError::Truncated { .. } | DeltaError::Corrupt { .. }),
                "cut {cut}: {err}"
            );
        }
    }
}

#[test]
fn trailing_data_is_rejected() {
    for codecs in CODECS {
        let (old, new) = pair();
        let mut patch = patch_of(&old, &new, codecs);
        patch.push(0);
        assert!(matches!(apply(&old, &patch), Err(DeltaError::Corrupt { .. })));
    }
}

#[test]
fn wrong_source_is_named() {
    for codecs in CODECS {
        let (old, new) = pair();
        let patch = patch_of(&old, &new, codecs);
        let err = apply(&old[1..], &patch).unwrap_err();
        assert!(
            matches!(
                err,
                DeltaError::SourceSizeMismatch {
                    expected: 200_000,
                    actual: 199_999
                }
            ),
            "{err}"
        );
        let mut other = old.clone();
        other[10] ^= 1;
        assert!(matches!(
            apply(&other, &patch),
            Err(DeltaError::SourceMismatch { .. })
        ));
        let opts = ApplyOptions {
            source_check: SourceCheck::SizeOnly,
            ..ApplyOptions::default()
        };
        let err = delta::apply_with(other.as_slice(), patch.as_slice(), std::io::sink(), &opts).unwrap_err();
        assert!(matches!(err, DeltaError::TargetHashMismatch { .. }), "{err}");
    }
}

#[test]
fn corrupted_bytes_never_panic_and_never_yield_a_wrong_target() {
    for codecs in CODECS {
        let (old, new) = pair();
        let patch = patch_of(&old, &new, codecs);
        for i in delta::HEADER_LEN..patch.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = patch.clone();
                bad[i] ^= bit;
                // A flip may be harmless (e.g. a larger zstd window descriptor); then the target hash
                // still proves the output right. Anything else must be an error, not a panic.
                if let Ok(out) = apply(&old, &bad) {
                    assert_eq!(out, new, "flip of byte {i} bit {bit:#x} produced a wrong target");
                }
            }
        }
    }
}

#[test]
fn corrupted_target_hash_is_reported() {
    for codecs in CODECS {
        let (old, new) = pair();
        let mut patch = patch_of(&old, &new, codecs);
        patch[70] ^= 1;
        assert!(matches!(
            apply(&old, &patch),
            Err(DeltaError::TargetHashMismatch { .. })
        ));
    }
}

#[test]
fn oversized_lengths_are_refused_before_allocating() {
    for codecs in CODECS {
        let (old, new) = pair();
        let patch = patch_of(&old, &new, codecs);
        let mut bad = patch[..delta::HEADER_LEN].to_vec();
        bad.push(b'S');
        bad.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
        let err = apply(&old, &bad).unwrap_err();
        assert!(matches!(err, DeltaError::LimitExceeded { .. }), "{err}");
        let mut bad = patch[..delta::HEADER_LEN].to_vec();
        bad.extend_from_slice(&[b'S', 0x10, 0xff, 0xff, 0xff, 0x7f]);
        let err = apply(&old, &bad).unwrap_err();
        assert!(matches!(err, DeltaError::Corrupt { .. }), "{err}");
    }
}

#[test]
fn garbage_after_a_valid_header_never_panics() {
    for codecs in CODECS {
        let (old, new) = pair();
        let patch = patch_of(&old, &new, codecs);
        let mut x = 0x9e37_79b9_u64;
        for len in 0..400 {
            let mut bad = patch[..delta::HEADER_LEN].to_vec();
            bad.push(b'S');
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bad.push(x as u8);
            }
            let _ = apply(&old, &bad).expect_err("garbage must not apply");
        }
    }
}

#[test]
fn declared_target_over_the_limit_is_refused() {
    for codecs in CODECS {
        let (old, new) = pair();
        let patch = patch_of(&old, &new, codecs);
        let opts = ApplyOptions {
            max_target_size: 1000,
            ..ApplyOptions::default()
        };
        let err = delta::apply_with(old.as_slice(), patch.as_slice(), std::io::sink(), &opts).unwrap_err();
        assert!(
            matches!(
                err,
                DeltaError::LimitExceeded {
                    what: "target size",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn file_sources_are_read_positionally() {
    for codecs in CODECS {
        let (old, new) = pair();
        let patch = patch_of(&old, &new, codecs);
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &old).unwrap();
        let mut out = Vec::new();
        delta::apply(&file, patch.as_slice(), &mut out).unwrap();
        assert_eq!(out, new);
    }
}
