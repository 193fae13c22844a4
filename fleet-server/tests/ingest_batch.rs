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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_outcomes_match_one_at_a_time_and_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let url = "mqtt://127.0.0.1:1883";
    let settings = Settings::new(dir.path(), BrokerSettings::External { url: url.into() });
    let core = halyard_server::server::core(settings, "http://127.0.0.1:1".into(), url).unwrap();
    let app = core.app;
    let keys: Vec<SigningKey> = (1..=5).map(key).collect();
    for (n, k) in keys.iter().enumerate() {
        enroll(&app, k, n);
    }
    let stranger = key(99);
    for n in [1, 40, 700] {
        let (raw, bad) = messages(&keys, &stranger, n);
        let mut alone = Vec::new();
        for (device, topic, bytes) in &raw {
            alone.push(ingest::verify(&app, device, *topic, bytes).await.map(|v| v.item));
        }
        let batch: Vec<_> = ingest::verify_batch(&app, raw)
            .await
            .into_iter()
            .map(|r| r.map(|v| v.item))
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
