//! Trust root: self-verification, rotation rules, expiry, and a round-trip property.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use halyard_ota::keys::PrivateKey;
use halyard_ota::limits::Limits;
use halyard_ota::root::{RoleName, RootError, RootFile, RootSigned, SignatureFailure, TrustedRoot};
use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);
const EXPIRES: OffsetDateTime = datetime!(2027-01-01 00:00 UTC);

fn key(n: u8) -> PrivateKey {
    PrivateKey::from_seed(&[n; 32])
}

fn root_v1(root_keys: &[u8], threshold: u32) -> RootSigned {
    let roots: Vec<_> = root_keys.iter().map(|n| key(*n).public()).collect();
    RootSigned::new(EXPIRES, (&roots, threshold), (&[key(100).public()], 1)).unwrap()
}

fn signed(signed: RootSigned, signers: &[u8]) -> Vec<u8> {
    let mut file = RootFile::unsigned(signed);
    for n in signers {
        file.sign(&key(*n));
    }
    file.to_json()
}

fn load(bytes: &[u8]) -> Result<TrustedRoot, RootError> {
    TrustedRoot::from_bytes(bytes, NOW, &Limits::DEFAULT)
}

#[test]
fn self_signed_root_loads_only_at_threshold() {
    let v1 = root_v1(&[1, 2, 3], 2);
    assert_eq!(load(&signed(v1.clone(), &[1, 3])).unwrap().signed(), &v1);
    let err = load(&signed(v1.clone(), &[1, 1])).unwrap_err();
    assert!(matches!(
        err,
        RootError::Signatures {
            source: SignatureFailure::ThresholdNotMet {
                valid: 1,
                threshold: 2,
                ..
            },
            ..
        }
    ));
    let err = load(&signed(v1, &[100])).unwrap_err();
    assert!(matches!(
        err,
        RootError::Signatures {
            source: SignatureFailure::UnknownKey {
                role: RoleName::Root,
                ..
            },
            ..
        }
    ));
}

#[test]
fn tampering_after_signing_is_detected() {
    let text = String::from_utf8(signed(root_v1(&[1], 1), &[1])).unwrap();
    let tampered = text.replace("\"version\": 1", "\"version\": 7");
    assert_ne!(text, tampered);
    let err = load(tampered.as_bytes()).unwrap_err();
    assert!(matches!(
        err,
        RootError::Signatures {
            source: SignatureFailure::BadSignature { .. },
            ..
        }
    ));
}

#[test]
fn unknown_fields_in_signed_part_are_rejected() {
    let text = String::from_utf8(signed(root_v1(&[1], 1), &[1])).unwrap();
    let extra = text.replace("\"spec_version\"", "\"extra\": 1, \"spec_version\"");
    assert!(matches!(load(extra.as_bytes()), Err(RootError::Malformed { .. })));
}

#[test]
fn expired_root_is_rejected() {
    let bytes = signed(root_v1(&[1], 1), &[1]);
    let err = TrustedRoot::from_bytes(&bytes, EXPIRES, &Limits::DEFAULT).unwrap_err();
    assert!(matches!(err, RootError::Expired { version: 1, .. }));
}

#[test]
fn rotation_needs_old_and_new_root_thresholds() {
    let v1 = root_v1(&[1, 2], 2);
    let trusted = load(&signed(v1.clone(), &[1, 2])).unwrap();
    // v2 replaces root key 2 with key 5 and the release key with key 101.
    let mut v2 = v1.next_version(EXPIRES);
    let v2_keys: Vec<_> = [1u8, 5].iter().map(|n| key(*n).public()).collect();
    let fresh = RootSigned::new(EXPIRES, (&v2_keys, 2), (&[key(101).public()], 1)).unwrap();
    v2.keys = fresh.keys;
    v2.roles = fresh.roles;

    let only_new = trusted.rotate(&signed(v2.clone(), &[1, 5]), NOW, &Limits::DEFAULT);
    assert!(matches!(
        only_new,
        Err(RootError::Signatures {
            source: SignatureFailure::ThresholdNotMet { valid: 1, .. },
            ..
        })
    ));
    let only_old = trusted.rotate(&signed(v2.clone(), &[1, 2]), NOW, &Limits::DEFAULT);
    assert!(matches!(
        only_old,
        Err(RootError::Signatures { ref by, .. }) if by == "itself"
    ));
    let both = trusted
        .rotate(&signed(v2.clone(), &[1, 2, 5]), NOW, &Limits::DEFAULT)
        .unwrap();
    assert_eq!(both.signed(), &v2);
    assert!(
        both.signed()
            .roles
            .release
            .keyids
            .contains(&key(101).public().id())
    );
}

#[test]
fn rotation_must_be_exactly_next_version() {
    let v1 = root_v1(&[1], 1);
    let trusted = load(&signed(v1.clone(), &[1])).unwrap();
    let v3 = v1.next_version(EXPIRES).next_version(EXPIRES);
    let err = trusted
        .rotate(&signed(v3, &[1]), NOW, &Limits::DEFAULT)
        .unwrap_err();
    assert!(matches!(err, RootError::VersionNotNext { current: 1, found: 3 }));
    let err = trusted
        .rotate(&signed(v1, &[1]), NOW, &Limits::DEFAULT)
        .unwrap_err();
    assert!(matches!(err, RootError::VersionNotNext { current: 1, found: 1 }));
}

#[test]
fn invalid_thresholds_and_oversize_are_rejected() {
    let k = [key(1).public()];
    let zero = RootSigned::new(EXPIRES, (&k, 0), (&k, 1));
    assert!(matches!(
        zero,
        Err(RootError::InvalidThreshold { threshold: 0, .. })
    ));
    let high = RootSigned::new(EXPIRES, (&k, 1), (&k, 2));
    assert!(matches!(
        high,
        Err(RootError::InvalidThreshold {
            role: RoleName::Release,
            ..
        })
    ));
    let bytes = signed(root_v1(&[1], 1), &[1]);
    let tiny = Limits {
        max_root_bytes: 100,
        ..Limits::DEFAULT
    };
    let err = TrustedRoot::from_bytes(&bytes, NOW, &tiny).unwrap_err();
    assert!(matches!(err, RootError::TooLarge { limit: 100, .. }));
}

proptest! {
    #[test]
    fn root_file_round_trips(
        root_seeds in proptest::collection::btree_set(1u8..50, 1..4),
        release_seeds in proptest::collection::btree_set(50u8..100, 1..4),
        secs in 1_700_000_000i64..2_000_000_000,
        bump in 0u64..5,
    ) {
        let roots: Vec<_> = root_seeds.iter().map(|n| key(*n).public()).collect();
        let releases: Vec<_> = release_seeds.iter().map(|n| key(*n).public()).collect();
        let expires = OffsetDateTime::from_unix_timestamp(secs).unwrap();
        let mut signed_part = RootSigned::new(expires, (&roots, 1), (&releases, 1)).unwrap();
        for _ in 0..bump {
            signed_part = signed_part.next_version(expires);
        }
        let mut file = RootFile::unsigned(signed_part);
        for n in &root_seeds {
            file.sign(&key(*n));
        }
        let bytes = file.to_json();
        let parsed = RootFile::parse(&bytes, &Limits::DEFAULT).unwrap();
        prop_assert_eq!(&parsed, &file);
        prop_assert_eq!(parsed.to_json(), bytes);
        prop_assert_eq!(parsed.signed.canonical_bytes(), file.signed.canonical_bytes());
        let now = OffsetDateTime::from_unix_timestamp(secs - 1).unwrap();
        prop_assert!(TrustedRoot::from_bytes(&file.to_json(), now, &Limits::DEFAULT).is_ok());
    }
}
