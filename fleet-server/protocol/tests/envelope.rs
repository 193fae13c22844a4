#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Envelope signing rules and payload round trips.

use ed25519_dalek::SigningKey;
use halyard_protocol::envelope::MAX_ENVELOPE_BYTES;
use halyard_protocol::*;
use proptest::prelude::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn device(k: &SigningKey) -> DeviceId {
    DeviceId::from_public_key(k.verifying_key().as_bytes())
}

fn presence(at: u64) -> Presence {
    Presence { online: true, at }
}

#[test]
fn sealed_envelope_opens_with_the_signers_key_only() {
    let (k, other) = (key(1), key(2));
    let env = Envelope::seal(&presence(5), &device(&k), 1, &k).unwrap();
    let wire = Envelope::decode(&env.encode()).unwrap();
    assert_eq!(wire.open::<Presence>(&k.verifying_key()).unwrap(), presence(5));
    let err = wire.open::<Presence>(&other.verifying_key()).unwrap_err();
    assert!(matches!(err, EnvelopeError::BadSignature { .. }), "{err}");
}

#[test]
fn every_signed_field_is_bound_by_the_signature() {
    let k = key(3);
    let env = Envelope::seal(&presence(5), &device(&k), 7, &k).unwrap();
    let mut tampered = vec![];
    let mut e = env.clone();
    e.seq = 8;
    tampered.push(e);
    let mut e = env.clone();
    e.device = DeviceId::new("pos-other").unwrap();
    tampered.push(e);
    let mut e = env.clone();
    e.kind = Kind::Report;
    tampered.push(e);
    let mut e = env.clone();
    e.body = e.body.replace("true", "false");
    tampered.push(e);
    for e in tampered {
        assert!(
            matches!(
                e.verify(&k.verifying_key()),
                Err(EnvelopeError::BadSignature { .. })
            ),
            "{e:?}"
        );
    }
}

#[test]
fn wrong_kind_garbage_and_oversize_are_refused() {
    let k = key(4);
    let env = Envelope::seal(&presence(1), &device(&k), 1, &k).unwrap();
    let err = env.open::<Report>(&k.verifying_key()).unwrap_err();
    assert!(matches!(
        err,
        EnvelopeError::WrongKind {
            expected: Kind::Report,
            found: Kind::Presence
        }
    ));
    assert!(matches!(
        Envelope::decode(b"{not json"),
        Err(EnvelopeError::Malformed(_))
    ));
    let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(
        Envelope::decode(&big),
        Err(EnvelopeError::TooLarge { .. })
    ));
    let mut e = env.clone();
    e.v = 99;
    assert!(matches!(
        Envelope::decode(&e.encode()),
        Err(EnvelopeError::Version { found: 99 })
    ));
    let mut e = env;
    e.sig = "!!".into();
    assert!(matches!(
        e.verify(&k.verifying_key()),
        Err(EnvelopeError::SignatureEncoding)
    ));
}

#[test]
fn seq_guard_accepts_fresh_ignores_duplicates_and_refuses_stale() {
    let k = key(5);
    let dev = device(&k);
    let mut guard = SeqGuard::default();
    let at = |seq| Envelope::seal(&presence(seq), &dev, seq, &k).unwrap();
    assert_eq!(guard.check(&at(3)).unwrap(), SeqVerdict::Fresh);
    assert_eq!(guard.check(&at(3)).unwrap(), SeqVerdict::Duplicate);
    assert!(matches!(
        guard.check(&at(2)),
        Err(EnvelopeError::Stale { seq: 2, last: 3, .. })
    ));
    assert_eq!(guard.check(&at(4)).unwrap(), SeqVerdict::Fresh);
    // Another kind from the same device has its own counter.
    let report_env = Envelope::seal(&sample_report(), &dev, 1, &k).unwrap();
    assert_eq!(guard.check(&report_env).unwrap(), SeqVerdict::Fresh);
    let restored = SeqGuard::restore([((dev.clone(), Kind::Presence), 4)]);
    assert_eq!(restored.last(&dev, Kind::Presence), Some(4));
}

fn sample_report() -> Report {
    let slot = |v: &str| SlotReport {
        version: Some(v.into()),
        image_sha256: Some(Sha256::of(v.as_bytes())),
        bootable: true,
        successful: true,
    };
    Report {
        at: 10,
        agent_version: "0.1.0".into(),
        product: "pos-x86".into(),
        hardware_class: "pos-x86".into(),
        active: Slot::B,
        slot_a: slot("1.0.0"),
        slot_b: slot("1.1.0"),
        state: AgentState::RolledBack {
            version: "1.2.0".into(),
            reason: "health: http 503".into(),
        },
        last_error: Some("health: http 503".into()),
        health: Some(HealthSummary {
            healthy: true,
            failing: vec![],
            checked_at: 9,
        }),
    }
}

fn arb_sha() -> impl Strategy<Value = Sha256> {
    any::<[u8; 32]>().prop_map(Sha256)
}

fn arb_artifact() -> impl Strategy<Value = Artifact> {
    ("[a-z/:.0-9]{1,40}", arb_sha(), any::<u64>()).prop_map(|(url, sha256, size)| Artifact {
        url,
        sha256,
        size,
    })
}

fn arb_desired() -> impl Strategy<Value = Desired> {
    let install = (
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
        arb_artifact(),
        prop::collection::vec((arb_sha(), arb_artifact()), 0..3),
        prop::option::of((any::<u64>(), any::<u64>())),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(version, bundle, deltas, window, deadline)| DesiredAction::Install {
                version,
                bundle,
                deltas: deltas
                    .into_iter()
                    .map(|(source_sha256, artifact)| DeltaOffer {
                        source_sha256,
                        artifact,
                    })
                    .collect(),
                window: window.map(|(a, b)| Window {
                    not_before: a,
                    not_after: b,
                }),
                deadline,
            },
        );
    let switch = ("\\PC{0,12}", arb_sha()).prop_map(|(version, image_sha256)| DesiredAction::Switch {
        version,
        image_sha256,
    });
    let action = prop_oneof![Just(DesiredAction::Stay), install, switch];
    (prop::option::of("\\PC{0,16}"), action).prop_map(|(rollout, action)| Desired { rollout, action })
}

proptest! {
    #[test]
    fn desired_round_trips_through_a_signed_envelope(d in arb_desired(), seq in any::<u64>(), seed in any::<u8>()) {
        let k = key(seed);
        let env = Envelope::seal(&d, &DeviceId::new("pos-1").unwrap(), seq, &k).unwrap();
        let back = Envelope::decode(&env.encode()).unwrap();
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(back.open::<Desired>(&k.verifying_key()).unwrap(), d);
    }

    #[test]
    fn decode_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn event_round_trips(reason in prop::option::of("\\PC{0,40}"), at in any::<u64>()) {
        let k = key(9);
        let ev = Event { at, rollout: None, from: AgentState::Idle,
            to: AgentState::Failed { version: None, reason: "x".into() }, reason };
        let env = Envelope::seal(&ev, &device(&k), 1, &k).unwrap();
        prop_assert_eq!(Envelope::decode(&env.encode()).unwrap().open::<Event>(&k.verifying_key()).unwrap(), ev);
    }
}

#[test]
fn report_round_trips() {
    let k = key(6);
    let r = sample_report();
    let env = Envelope::seal(&r, &device(&k), 2, &k).unwrap();
    assert_eq!(
        Envelope::decode(&env.encode())
            .unwrap()
            .open::<Report>(&k.verifying_key())
            .unwrap(),
        r
    );
}
