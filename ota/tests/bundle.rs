//! Bundle write → verify → install, streaming behaviour, re-signing, and a round-trip property.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;

use halyard_ota::bundle::{self, BundleError, VerifyPolicy};
use halyard_ota::delta::{self, DiffOptions};
use halyard_ota::hash::Sha256Digest;
use halyard_ota::keys::{PrivateKey, SignatureEntry};
use halyard_ota::limits::Limits;
use halyard_ota::manifest::{ImageRef, Manifest, Payload, SourceRef};
use halyard_ota::root::{RootFile, RootSigned, TrustedRoot};
use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

fn key(n: u8) -> PrivateKey {
    PrivateKey::from_seed(&[n; 32])
}

fn trusted(release_threshold: u32) -> TrustedRoot {
    let releases = [key(10).public(), key(11).public()];
    let signed = RootSigned::new(
        datetime!(2030-01-01 00:00 UTC),
        (&[key(1).public()], 1),
        (&releases, release_threshold),
    )
    .unwrap();
    let mut file = RootFile::unsigned(signed);
    file.sign(&key(1));
    TrustedRoot::from_bytes(&file.to_json(), NOW, &Limits::DEFAULT).unwrap()
}

fn policy() -> VerifyPolicy {
    VerifyPolicy {
        product: Some("demo".parse().unwrap()),
        min_security_version: 3,
        now: NOW,
        active_source_sha256: None,
    }
}

fn manifest_for(payloads: Vec<Payload>) -> Manifest {
    Manifest::new(
        "demo".parse().unwrap(),
        semver::Version::new(2, 0, 0),
        3,
        datetime!(2026-05-01 00:00 UTC),
        payloads,
    )
    .unwrap()
}

fn build(manifest: &Manifest, signers: &[u8], payloads: &[&[u8]]) -> Vec<u8> {
    let keys: Vec<_> = signers.iter().map(|n| key(*n)).collect();
    let sigs = bundle::sign_manifest(manifest, &keys);
    let mut readers: Vec<&[u8]> = payloads.to_vec();
    let mut sources: Vec<&mut dyn Read> = readers.iter_mut().map(|r| r as &mut dyn Read).collect();
    let mut out = Vec::new();
    bundle::write_bundle(&mut out, manifest, &sigs, &mut sources, &mut |_| {}).unwrap();
    out
}

fn full(name: &str, data: &[u8]) -> Payload {
    Payload::full(name.parse().unwrap(), data.len() as u64, Sha256Digest::of(data))
}

#[test]
fn full_payload_installs_and_end_is_checked() {
    let image = vec![7u8; 100_000];
    let manifest = manifest_for(vec![full("rootfs", &image)]);
    let bytes = build(&manifest, &[10], &[&image]);
    let root = trusted(1);
    let mut verified = bundle::open(&bytes[..], &root, &policy(), &Limits::DEFAULT).unwrap();
    assert_eq!(verified.manifest(), &manifest);
    assert_eq!(verified.signers(), &[key(10).public().id()]);
    let payload = verified.next_payload().unwrap().unwrap();
    let mut out = Vec::new();
    let stats = bundle::install_payload::<_, [u8], _>(payload, None, &mut out).unwrap();
    assert_eq!(out, image);
    assert_eq!(stats.target_sha256, Sha256Digest::of(&image));
    verified.finish().unwrap();
}

#[test]
fn delta_payload_installs_from_source() {
    let old: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut new = old.clone();
    new[1000..1100].fill(0xAB);
    let mut patch = Vec::new();
    delta::diff(&old, &new, &DiffOptions::default(), &mut patch).unwrap();
    let target = ImageRef {
        size: new.len() as u64,
        sha256: Sha256Digest::of(&new),
    };
    let source = SourceRef {
        version: semver::Version::new(1, 0, 0),
        sha256: Sha256Digest::of(&old),
    };
    let patch_ref = ImageRef {
        size: patch.len() as u64,
        sha256: Sha256Digest::of(&patch),
    };
    let manifest = manifest_for(vec![Payload::delta(
        "rootfs".parse().unwrap(),
        patch_ref,
        target,
        source,
    )]);
    let bytes = build(&manifest, &[10], &[&patch]);

    let root = trusted(1);
    let mut p = policy();
    p.active_source_sha256 = Some(Sha256Digest::of(&old));
    let mut verified = bundle::open(&bytes[..], &root, &p, &Limits::DEFAULT).unwrap();
    let payload = verified.next_payload().unwrap().unwrap();
    let mut out = Vec::new();
    bundle::install_payload(payload, Some(&old[..]), &mut out).unwrap();
    assert_eq!(out, new);
    verified.finish().unwrap();

    // Without a source the delta cannot be installed.
    let mut verified = bundle::open(&bytes[..], &root, &policy(), &Limits::DEFAULT).unwrap();
    let payload = verified.next_payload().unwrap().unwrap();
    let err = bundle::install_payload::<_, [u8], _>(payload, None, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, BundleError::DeltaNeedsSource { .. }));
}

#[test]
fn corrupted_payload_fails_at_its_end_with_typed_error() {
    let image = vec![1u8; 300_000];
    let manifest = manifest_for(vec![full("rootfs", &image)]);
    let mut bytes = build(&manifest, &[10], &[&image]);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let root = trusted(1);
    let mut verified = bundle::open(&bytes[..], &root, &policy(), &Limits::DEFAULT).unwrap();
    let mut payload = verified.next_payload().unwrap().unwrap();
    let mut out = Vec::new();
    let io_err = payload.read_to_end(&mut out).unwrap_err();
    assert!(out.len() < image.len(), "the bad final chunk was withheld");
    assert!(matches!(
        BundleError::from_io(io_err),
        BundleError::PayloadHashMismatch { .. }
    ));
    assert!(matches!(
        payload.finish(),
        Err(BundleError::PayloadHashMismatch { .. })
    ));
}

#[test]
fn second_signature_added_later_meets_threshold() {
    let image = b"tiny image".to_vec();
    let manifest = manifest_for(vec![full("rootfs", &image)]);
    let bytes = build(&manifest, &[10], &[&image]);
    let root = trusted(2);
    let err = bundle::open(&bytes[..], &root, &policy(), &Limits::DEFAULT).unwrap_err();
    assert!(matches!(
        err,
        BundleError::ThresholdNotMet {
            valid: 1,
            threshold: 2
        }
    ));
    // A raw signature made elsewhere (here: by the key directly) is added by key id.
    let raw = key(11).sign(&manifest.to_canonical_bytes());
    let entry = SignatureEntry {
        keyid: key(11).public().id(),
        sig: raw.to_vec(),
    };
    let mut resigned = Vec::new();
    bundle::add_signatures(&bytes[..], &mut resigned, &[entry], &Limits::DEFAULT).unwrap();
    let verified = bundle::open(&resigned[..], &root, &policy(), &Limits::DEFAULT).unwrap();
    assert_eq!(verified.signers().len(), 2);
    verified.finish().unwrap();
}

#[test]
fn writer_refuses_payloads_that_do_not_match_the_manifest() {
    let manifest = manifest_for(vec![full("rootfs", b"expected")]);
    let sigs = bundle::sign_manifest(&manifest, &[key(10)]);
    let mut other: &[u8] = b"EXPECTED";
    let mut sources: Vec<&mut dyn Read> = vec![&mut other];
    let err = bundle::write_bundle(Vec::new(), &manifest, &sigs, &mut sources, &mut |_| {}).unwrap_err();
    assert!(matches!(err, BundleError::PayloadHashMismatch { .. }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn bundle_round_trips(
        images in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..4),
        security_version in 3u64..1000,
        signers in proptest::collection::btree_set(10u8..12, 1..3),
    ) {
        let payloads: Vec<Payload> =
            images.iter().enumerate().map(|(i, d)| full(&format!("part{i}"), d)).collect();
        let mut manifest = manifest_for(payloads);
        manifest.security_version = security_version;
        let signer_list: Vec<u8> = signers.iter().copied().collect();
        let slices: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        let bytes = build(&manifest, &signer_list, &slices);
        let root = trusted(1);
        let mut verified = bundle::open(&bytes[..], &root, &policy(), &Limits::DEFAULT).unwrap();
        prop_assert_eq!(verified.manifest(), &manifest);
        prop_assert_eq!(verified.signers().len(), signers.len());
        for image in &images {
            let mut payload = verified.next_payload().unwrap().unwrap();
            let mut out = Vec::new();
            payload.read_to_end(&mut out).unwrap();
            prop_assert_eq!(&out, image);
        }
        prop_assert!(verified.next_payload().unwrap().is_none());
        verified.finish().unwrap();
    }
}

#[test]
fn root_key_signature_does_not_count_for_release() {
    let image = b"img".to_vec();
    let manifest = manifest_for(vec![full("rootfs", &image)]);
    let bytes = build(&manifest, &[1], &[&image]);
    let err = bundle::open(&bytes[..], &trusted(1), &policy(), &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, BundleError::UnknownKey { key_id } if key_id == key(1).public().id()));
}

#[test]
fn signature_limits_apply_before_reading() {
    let image = b"img".to_vec();
    let manifest = manifest_for(vec![full("rootfs", &image)]);
    let bytes = build(&manifest, &[10, 11], &[&image]);
    let few = Limits {
        max_signatures: 1,
        ..Limits::DEFAULT
    };
    let err = bundle::open(&bytes[..], &trusted(1), &policy(), &few).unwrap_err();
    assert!(matches!(
        err,
        BundleError::TooManySignatures { count: 2, limit: 1 }
    ));
    let small = Limits {
        max_signature_bytes: 63,
        ..Limits::DEFAULT
    };
    let err = bundle::open(&bytes[..], &trusted(1), &policy(), &small).unwrap_err();
    assert!(matches!(
        err,
        BundleError::SignatureTooLarge {
            size: 64,
            limit: 63,
            ..
        }
    ));
    let tiny = Limits {
        max_payload_bytes: 2,
        ..Limits::DEFAULT
    };
    let err = bundle::open(&bytes[..], &trusted(1), &policy(), &tiny).unwrap_err();
    assert!(matches!(
        err,
        BundleError::PayloadTooLarge {
            size: 3,
            limit: 2,
            ..
        }
    ));
}

#[test]
fn expired_trust_root_refuses_bundles() {
    let image = b"img".to_vec();
    let manifest = manifest_for(vec![full("rootfs", &image)]);
    let bytes = build(&manifest, &[10], &[&image]);
    let mut late = policy();
    late.now = datetime!(2031-01-01 00:00 UTC);
    let err = bundle::open(&bytes[..], &trusted(1), &late, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, BundleError::Root { .. }));
}

#[test]
fn header_only_open_and_external_delta_checked_against_signed_target() {
    let old: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let mut new = old.clone();
    new[500..600].fill(1);
    let manifest = manifest_for(vec![full("rootfs", &new)]);
    let bytes = build(&manifest, &[10], &[&new]);
    // The device fetches only the header (e.g. an HTTP Range request), not the full payload.
    let header_len = bytes.len() - new.len();
    let verified = bundle::open(&bytes[..header_len], &trusted(1), &policy(), &Limits::DEFAULT).unwrap();
    let payload = verified.manifest().payloads[0].clone();

    let mut patch = Vec::new();
    delta::diff(&old, &new, &DiffOptions::default(), &mut patch).unwrap();
    let mut out = Vec::new();
    let stats = bundle::install_from_external_delta(&payload, &old[..], &patch[..], &mut out).unwrap();
    assert_eq!(out, new);
    assert_eq!(stats.target_sha256, Sha256Digest::of(&new));

    // A patch that builds something else is refused even though it applies cleanly.
    let mut other = new.clone();
    other[0] ^= 1;
    let mut evil = Vec::new();
    delta::diff(&old, &other, &DiffOptions::default(), &mut evil).unwrap();
    let err =
        bundle::install_from_external_delta(&payload, &old[..], &evil[..], &mut Vec::new()).unwrap_err();
    assert!(matches!(err, BundleError::TargetMismatch { .. }));
    // A patch for another source does not apply.
    let err =
        bundle::install_from_external_delta(&payload, &new[..], &patch[..], &mut Vec::new()).unwrap_err();
    assert!(matches!(err, BundleError::Delta { .. }));
}
