#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The bundle install path checks a delta's header against the signed manifest before it
//! reads the source or writes a byte.

use halyard_ota::bundle::{self, BundleError};
use halyard_ota::delta::{self, Codec, DiffOptions};
use halyard_ota::hash::Sha256Digest;
use halyard_ota::manifest::Payload;

fn images() -> (Vec<u8>, Vec<u8>) {
    let old: Vec<u8> = (0..80_000u32).map(|i| (i % 251) as u8).collect();
    let mut new = old.clone();
    new[1000..1100].fill(9);
    (old, new)
}

fn payload_for(image: &[u8]) -> Payload {
    Payload::full(
        "rootfs".parse().unwrap(),
        image.len() as u64,
        Sha256Digest::of(image),
    )
}

#[test]
fn patch_for_another_target_is_refused_before_writing() {
    let (old, new) = images();
    let payload = payload_for(&new);
    for codecs in [[Codec::Zstd; 3], [Codec::Zstd, Codec::Lzma2, Codec::Lzma2]] {
        let opts = DiffOptions {
            codecs,
            ..DiffOptions::default()
        };
        let mut good = Vec::new();
        delta::diff(&old, &new, &opts, &mut good).unwrap();
        let mut out = Vec::new();
        bundle::install_from_external_delta(&payload, &old[..], &good[..], &mut out).unwrap();
        assert_eq!(out, new);

        // Same size, other content: the header's digest disagrees with the manifest.
        let mut other = new.clone();
        other[5] ^= 1;
        // Another size as well.
        let longer = [new.as_slice(), b"tail"].concat();
        for target in [other, longer] {
            let mut evil = Vec::new();
            delta::diff(&old, &target, &opts, &mut evil).unwrap();
            let mut out = Vec::new();
            // A source of the wrong size too: the header check must come before the source is used.
            let err =
                bundle::install_from_external_delta(&payload, &old[1..], &evil[..], &mut out).unwrap_err();
            assert!(
                matches!(&err, BundleError::TargetMismatch { actual_size, .. } if *actual_size == target.len() as u64),
                "{err}"
            );
            assert!(out.is_empty(), "nothing may be written before the header check");
        }
    }
}

#[test]
fn truncated_or_garbage_header_is_a_delta_error() {
    let (_, new) = images();
    let payload = payload_for(&new);
    for patch in [&b"HLYDELTA"[..], &[0u8; 200][..]] {
        let mut out = Vec::new();
        let err = bundle::install_from_external_delta(&payload, &new[..], patch, &mut out).unwrap_err();
        assert!(matches!(err, BundleError::Delta { .. }), "{err}");
        assert!(out.is_empty());
    }
}
