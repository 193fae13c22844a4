//! The pure half of the MQTT transport: what the inbox accepts, ignores and rejects, how outgoing
//! messages are sealed and where they go, and the reconnect backoff's bounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ed25519_dalek::SigningKey;
use halyard_node::driver::Outgoing;
use halyard_node::transport::codec::{Inbox, Rejected, backoff, presence, seal};
use halyard_protocol::topics::Topic;
use halyard_protocol::{
    AgentState, Desired, DesiredAction, DeviceId, Envelope, EnvelopeError, Event, Presence,
};

fn device() -> DeviceId {
    DeviceId::new("pos-7").unwrap()
}

fn server() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn desired(seq: u64, key: &SigningKey, to: &DeviceId) -> Vec<u8> {
    let d = Desired {
        rollout: Some(format!("r{seq}")),
        action: DesiredAction::Stay,
    };
    Envelope::seal(&d, to, seq, key).unwrap().encode()
}

#[test]
fn inbox_accepts_fresh_ignores_duplicates_and_rejects_the_rest() {
    let mut inbox = Inbox::new(device(), server().verifying_key());
    let topic = Topic::Desired.for_device(&device());
    assert_eq!(inbox.topic(), topic);
    let got = inbox
        .accept(&topic, &desired(5, &server(), &device()))
        .unwrap()
        .unwrap();
    assert_eq!(got.rollout.as_deref(), Some("r5"));
    assert!(
        inbox
            .accept(&topic, &desired(5, &server(), &device()))
            .unwrap()
            .is_none(),
        "redelivery"
    );
    let stale = inbox
        .accept(&topic, &desired(4, &server(), &device()))
        .unwrap_err();
    assert!(
        matches!(stale, Rejected::Envelope(EnvelopeError::Stale { .. })),
        "{stale}"
    );
    let forged = inbox
        .accept(&topic, &desired(9, &SigningKey::from_bytes(&[2; 32]), &device()))
        .unwrap_err();
    assert!(
        matches!(forged, Rejected::Envelope(EnvelopeError::BadSignature { .. })),
        "{forged}"
    );
    let other = DeviceId::new("pos-8").unwrap();
    let err = inbox.accept(&topic, &desired(9, &server(), &other)).unwrap_err();
    assert!(matches!(err, Rejected::Device { .. }), "{err}");
    let err = inbox
        .accept(
            &Topic::Report.for_device(&device()),
            &desired(9, &server(), &device()),
        )
        .unwrap_err();
    assert!(matches!(err, Rejected::Topic { .. }), "{err}");
    assert!(inbox.accept(&topic, b"not json").is_err());
    assert_eq!(
        inbox
            .accept(&topic, &desired(6, &server(), &device()))
            .unwrap()
            .unwrap()
            .rollout
            .as_deref(),
        Some("r6")
    );
}

#[test]
fn outgoing_messages_are_signed_for_their_topics() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let event = Event {
        at: 1,
        rollout: None,
        from: AgentState::Idle,
        to: AgentState::Installing {
            version: "2.0.0".into(),
        },
        reason: None,
    };
    let p = seal(&Outgoing::Event(event.clone()), &device(), 17, &key).unwrap();
    assert_eq!(
        (p.topic.as_str(), p.retain),
        ("halyard/v1/devices/pos-7/events", false)
    );
    let env = Envelope::decode(&p.payload).unwrap();
    assert_eq!(env.seq, 17);
    assert_eq!(env.open::<Event>(&key.verifying_key()).unwrap(), event);
    let will = presence(false, 9, &device(), 18, &key).unwrap();
    assert_eq!(
        (will.topic.as_str(), will.retain),
        ("halyard/v1/devices/pos-7/presence", true)
    );
    let p: Presence = Envelope::decode(&will.payload)
        .unwrap()
        .open(&key.verifying_key())
        .unwrap();
    assert_eq!(p, Presence { online: false, at: 9 });
}

#[test]
fn backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() {
    let (min, max) = (Duration::from_secs(1), Duration::from_secs(60));
    for attempt in 0..20 {
        let ceiling = (min * 2u32.pow(attempt.min(16))).min(max);
        for noise in [0, 1, 12_345, u64::MAX] {
            let d = backoff(attempt, min, max, noise);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {attempt}: {d:?} vs {ceiling:?}"
            );
        }
    }
    assert_ne!(
        backoff(3, min, max, 1),
        backoff(3, min, max, 2_000),
        "noise spreads the fleet"
    );
}

fn report() -> halyard_protocol::Report {
    let slot = halyard_protocol::SlotReport {
        version: Some("1.0.0".into()),
        image_sha256: None,
        bootable: true,
        successful: true,
    };
    halyard_protocol::Report {
        at: 1,
        agent_version: "0.1.0".into(),
        product: "test".into(),
        hardware_class: "hw".into(),
        active: halyard_protocol::Slot::A,
        slot_a: slot.clone(),
        slot_b: slot,
        state: AgentState::Idle,
        last_error: None,
        health: None,
    }
}

fn transition(at: u64) -> Event {
    Event {
        at,
        rollout: Some("r1".into()),
        from: AgentState::Idle,
        to: AgentState::Idle,
        reason: None,
    }
}

#[test]
fn the_events_of_a_settle_travel_in_one_envelope_numbered_one_by_one() {
    use halyard_node::transport::codec::{Batch, batches};
    use halyard_protocol::{Events, MAX_EVENTS_PER_ENVELOPE};
    let report = || Outgoing::Report(report());
    let ev = |at| Outgoing::Event(transition(at));
    // A run of events becomes one batch; a lone event stays single; order is kept.
    let got = batches(vec![ev(1), ev(2), ev(3), report(), ev(4)]);
    assert_eq!(
        got,
        vec![
            Batch::Events(vec![transition(1), transition(2), transition(3)]),
            Batch::One(Box::new(report())),
            Batch::One(Box::new(ev(4))),
        ]
    );
    assert_eq!(got.iter().map(Batch::seqs).collect::<Vec<_>>(), [3, 1, 1]);
    // Long runs are split at the cap.
    let many: Vec<_> = (0..MAX_EVENTS_PER_ENVELOPE as u64 + 1).map(ev).collect();
    let split = batches(many);
    assert_eq!(split.len(), 2);
    assert_eq!(split[0].seqs(), MAX_EVENTS_PER_ENVELOPE as u64);
    assert_eq!(split[1], Batch::One(Box::new(ev(MAX_EVENTS_PER_ENVELOPE as u64))));
    // Sealed with the last of its numbers; the receiver numbers the events back.
    let key = SigningKey::from_bytes(&[3; 32]);
    let p = got[0].seal(&device(), 12, &key).unwrap();
    assert_eq!(
        (p.topic.as_str(), p.retain),
        ("halyard/v1/devices/pos-7/events", false)
    );
    let env = Envelope::decode(&p.payload).unwrap();
    let body: Events = env.open(&key.verifying_key()).unwrap();
    let numbered = body.numbered(env.seq).unwrap();
    assert_eq!(
        numbered,
        vec![(10, transition(1)), (11, transition(2)), (12, transition(3))]
    );
    // A single `event` envelope cannot be read as a batch, nor the other way round.
    assert!(matches!(
        env.open::<Event>(&key.verifying_key()),
        Err(EnvelopeError::WrongKind { .. })
    ));
}

#[test]
fn an_events_body_numbers_nothing_below_one() {
    use halyard_protocol::Events;
    let three = || Events {
        events: vec![transition(1), transition(2), transition(3)],
    };
    assert_eq!(three().numbered(2), None);
    assert_eq!(three().numbered(3).unwrap()[0].0, 1);
    assert_eq!(Events { events: vec![] }.numbered(5), None);
    assert_eq!(three().numbered(u64::MAX).unwrap()[2].0, u64::MAX);
}
