#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The ingest path's batch verification through a real server core: every message gets the outcome
//! the one-at-a-time path gives it, in order, with forgeries, strangers and garbage mixed in, and in
//! batches large enough to be split over several blocking threads.

use ed25519_dalek::SigningKey;
use halyard_protocol::{DeviceId, Envelope, Event, Presence, Topic};
use halyard_server::ingest::{self, IngestError};
use halyard_server::model::{EnrollToken, NewDevice};
use halyard_server::settings::{BrokerSettings, Settings};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn id(k: &SigningKey) -> DeviceId {
    DeviceId::from_public_key(k.verifying_key().as_bytes())
}

fn enroll(app: &halyard_server::app::App, k: &SigningKey, n: usize) {
    let hash = format!("hash-{n}");
    let token = EnrollToken {
        id: format!("t{n}"),
        site: None,
        tags: vec![],
        created_at: 0,
        expires_at: None,
        used_by: None,
    };
    app.store.put_enroll_token(&hash, &token).unwrap();
    let device = NewDevice {
        id: id(k),
        public_key: hex::encode(k.verifying_key().as_bytes()),
        product: "p".into(),
        hardware_class: "hw".into(),
    };
    app.store.enroll(&hash, &device, 0).unwrap();
}

fn event(seq: u64) -> Event {
    serde_json::from_value(serde_json::json!({
        "at": seq, "rollout": null,
        "from": {"state": "idle"}, "to": {"state": "idle"}, "reason": null
    }))
    .unwrap()
}

/// A message as it arrives: (device the topic names, topic, bytes).
type Raw = (DeviceId, Topic, Vec<u8>);

/// A presence of `k`'s device, signed by `signer`.
fn presence(k: &SigningKey, signer: &SigningKey, seq: u64) -> Raw {
    let p = Presence {
        online: true,
        at: seq,
    };
    (
        id(k),
        Topic::Presence,
        Envelope::seal(&p, &id(k), seq, signer).unwrap().encode(),
    )
}

fn messages(keys: &[SigningKey], stranger: &SigningKey, n: u64) -> (Vec<Raw>, Vec<u64>) {
    let mut raw = Vec::new();
    let mut bad = Vec::new();
    for seq in 1..=n {
        let k = &keys[seq as usize % keys.len()];
        let m = match seq % 50 {
            // Signed by another key.
            7 => presence(k, stranger, seq),
            19 => (id(k), Topic::Events, b"not an envelope".to_vec()),
            23 => presence(stranger, stranger, seq),
            31 => (id(&keys[0]), Topic::Presence, presence(&keys[1], &keys[1], seq).2),
            _ => (
                id(k),
                Topic::Events,
                Envelope::seal(&event(seq), &id(k), seq, k).unwrap().encode(),
            ),
        };
        if [7, 19, 23, 31].contains(&(seq % 50)) {
            bad.push(seq);
        }
        raw.push(m);
    }
    (raw, bad)
}

/// A server core on `dir` (no broker connection: messages are handed to the ingest path directly).
fn server_core(dir: &std::path::Path) -> std::sync::Arc<halyard_server::app::App> {
    let url = "mqtt://127.0.0.1:1883";
    let settings = Settings::new(dir, BrokerSettings::External { url: url.into() });
    halyard_server::server::core(settings, "http://127.0.0.1:1".into(), url)
        .unwrap()
        .app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_outcomes_match_one_at_a_time_and_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let app = server_core(dir.path());
    let keys: Vec<SigningKey> = (1..=5).map(key).collect();
    for (n, k) in keys.iter().enumerate() {
        enroll(&app, k, n);
    }
    let stranger = key(99);
    for n in [1, 40, 700] {
        let (raw, bad) = messages(&keys, &stranger, n);
        let mut alone = Vec::new();
        for (device, topic, bytes) in &raw {
            alone.push(ingest::verify(&app, device, *topic, bytes).await.map(|v| v.items));
        }
        let batch: Vec<_> = ingest::verify_batch(&app, raw)
            .await
            .into_iter()
            .map(|r| r.map(|v| v.items))
            .collect();
        assert_eq!(batch.len(), n as usize);
        let failed: Vec<u64> = (1..=n).filter(|s| batch[*s as usize - 1].is_err()).collect();
        assert_eq!(failed, bad, "{n} messages");
        for (b, a) in batch.iter().zip(&alone) {
            match (b, a) {
                (Ok(b), Ok(a)) => assert_eq!(b, a),
                (Err(b), Err(a)) => assert_eq!(b.to_string(), a.to_string()),
                _ => panic!("batch {b:?} but alone {a:?}"),
            }
        }
        if n == 700 {
            assert!(
                matches!(batch[6], Err(IngestError::Envelope(_))),
                "{:?}",
                batch[6]
            );
            assert!(
                matches!(batch[22], Err(IngestError::UnknownDevice(_))),
                "{:?}",
                batch[22]
            );
            assert!(
                matches!(batch[30], Err(IngestError::WrongDevice { .. })),
                "{:?}",
                batch[30]
            );
        }
    }
}

/// The events of one settle in one `events` envelope: each is stored with its own sequence number
/// (the `n` numbers ending at the envelope's), a second delivery is a replay, and envelopes that
/// number no event or come on the wrong topic are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_envelope_stores_each_event_under_its_own_number() {
    let dir = tempfile::tempdir().unwrap();
    let app = server_core(dir.path());
    let k = key(7);
    enroll(&app, &k, 1);
    let events = |seqs: std::ops::RangeInclusive<u64>| halyard_protocol::Events {
        events: seqs.map(event).collect(),
    };
    let sealed =
        |body: &halyard_protocol::Events, seq: u64| Envelope::seal(body, &id(&k), seq, &k).unwrap().encode();
    let three = sealed(&events(4..=6), 6);
    let raw = vec![
        (id(&k), Topic::Events, three.clone()),
        (id(&k), Topic::Events, three.clone()),
        (id(&k), Topic::Events, sealed(&events(1..=3), 2)),
        (
            id(&k),
            Topic::Events,
            sealed(&halyard_protocol::Events { events: vec![] }, 9),
        ),
        (id(&k), Topic::Report, sealed(&events(10..=11), 11)),
    ];
    let taken = ingest::take_batch(&app, raw, 100).await;
    assert_eq!(
        (taken.stored, taken.replays, taken.refused),
        (1, 1, 3),
        "{taken:?}"
    );
    let stored: Vec<(u64, i64)> = app
        .store
        .device_events(&id(&k), 10)
        .unwrap()
        .iter()
        .map(|e| (e.seq, e.at))
        .collect();
    // Event `i` of the envelope numbered 6 is numbered 4 + i, and keeps its own body.
    assert_eq!(stored, vec![(4, 4), (5, 5), (6, 6)]);
    let short = ingest::verify(&app, &id(&k), Topic::Events, &sealed(&events(1..=3), 2)).await;
    assert!(
        matches!(short, Err(IngestError::NoEvents { seq: 2 })),
        "{short:?}"
    );
    let wrong = ingest::verify(&app, &id(&k), Topic::Report, &three).await;
    assert!(matches!(wrong, Err(IngestError::WrongTopic { .. })), "{wrong:?}");
}
