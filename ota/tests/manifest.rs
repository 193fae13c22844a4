//! Manifest canonical encoding: decode(encode(m)) == m and encode is a fixed point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use halyard_ota::hash::Sha256Digest;
use halyard_ota::manifest::{ImageRef, Manifest, Name, Payload, SourceRef};
use proptest::prelude::*;
use time::OffsetDateTime;

fn name() -> impl Strategy<Value = Name> {
    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}".prop_map(|s| s.parse().unwrap())
}

fn digest() -> impl Strategy<Value = Sha256Digest> {
    any::<[u8; 32]>().prop_map(Sha256Digest)
}

fn version() -> impl Strategy<Value = semver::Version> {
    (
        0u64..100,
        0u64..100,
        0u64..100,
        proptest::option::of("[a-z]{1,6}\\.[1-9][0-9]{0,2}"),
    )
        .prop_map(|(a, b, c, pre)| {
            let mut v = semver::Version::new(a, b, c);
            if let Some(pre) = pre {
                v.pre = semver::Prerelease::new(&pre).unwrap();
            }
            v
        })
}

fn time() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..4_000_000_000, 0u32..1_000_000_000).prop_map(|(s, ns)| {
        OffsetDateTime::from_unix_timestamp(s)
            .unwrap()
            .replace_nanosecond(ns)
            .unwrap()
    })
}

fn payload() -> impl Strategy<Value = Payload> {
    (
        name(),
        any::<u64>(),
        digest(),
        any::<bool>(),
        any::<u64>(),
        digest(),
        version(),
        digest(),
    )
        .prop_map(|(name, size, sha, is_delta, tsize, tsha, sver, ssha)| {
            if is_delta {
                Payload::delta(
                    name,
                    ImageRef { size, sha256: sha },
                    ImageRef {
                        size: tsize,
                        sha256: tsha,
                    },
                    SourceRef {
                        version: sver,
                        sha256: ssha,
                    },
                )
            } else {
                Payload::full(name, size, sha)
            }
        })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        name(),
        version(),
        any::<u64>(),
        time(),
        proptest::option::of(time()),
        proptest::collection::vec(payload(), 1..5),
    )
        .prop_filter_map(
            "payload names must be distinct",
            |(product, v, sv, created, expires, payloads)| {
                let mut m = Manifest::new(product, v, sv, created, payloads).ok()?;
                m.expires = expires;
                Some(m)
            },
        )
}

proptest! {
    #[test]
    fn manifest_round_trips(m in manifest()) {
        let bytes = m.to_canonical_bytes();
        let back = Manifest::from_canonical_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.to_canonical_bytes(), bytes);
    }
}
