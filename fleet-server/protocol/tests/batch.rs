#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Batch verification gives every envelope the outcome it gets alone.

use ed25519_dalek::{SigningKey, VerifyingKey};
use halyard_protocol::batch::verify_many;
use halyard_protocol::*;
use proptest::prelude::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn device(k: &SigningKey) -> DeviceId {
    DeviceId::from_public_key(k.verifying_key().as_bytes())
}

/// `n` envelopes from `n` devices, with their keys.
fn fleet(n: u8) -> (Vec<Envelope>, Vec<VerifyingKey>) {
    (0..n)
        .map(|i| {
            let k = key(i.wrapping_add(1));
            let p = Presence {
                online: i % 2 == 0,
                at: u64::from(i),
            };
            (
                Envelope::seal(&p, &device(&k), u64::from(i) + 1, &k).unwrap(),
                k.verifying_key(),
            )
        })
        .unzip()
}

fn outcomes(envs: &[Envelope], keys: &[VerifyingKey]) -> Vec<Result<Presence, String>> {
    let items: Vec<_> = envs.iter().zip(keys).collect();
    verify_many(&items)
        .into_iter()
        .map(|r| r.and_then(|c| c.open::<Presence>()).map_err(|e| e.to_string()))
        .collect()
}

fn alone(envs: &[Envelope], keys: &[VerifyingKey]) -> Vec<Result<Presence, String>> {
    envs.iter()
        .zip(keys)
        .map(|(e, k)| e.open::<Presence>(k).map_err(|e| e.to_string()))
        .collect()
}

#[test]
fn a_good_batch_opens_every_body() {
    let (envs, keys) = fleet(40);
    let got = outcomes(&envs, &keys);
    assert_eq!(got, alone(&envs, &keys));
    assert!(got.iter().all(Result::is_ok));
    assert_eq!(got[3].as_ref().unwrap().at, 3);
    assert!(verify_many(&[]).is_empty());
}

#[test]
fn each_bad_envelope_fails_alone_and_the_rest_pass() {
    let (mut envs, mut keys) = fleet(40);
    envs[5].body = envs[5].body.replace("false", "true");
    envs[17].sig = "not base64!".into();
    keys[23] = key(200).verifying_key();
    envs[31].seq += 1;
    let got = outcomes(&envs, &keys);
    assert_eq!(got, alone(&envs, &keys));
    let failed: Vec<usize> = (0..got.len()).filter(|i| got[*i].is_err()).collect();
    assert_eq!(failed, vec![5, 17, 23, 31]);
    assert!(got[17].as_ref().unwrap_err().contains("base64"), "{:?}", got[17]);
}

#[test]
fn a_small_order_key_is_refused_as_verify_strict_refuses_it() {
    let (envs, mut keys) = fleet(3);
    // The identity point: a valid encoding, but of a point of order 1.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    keys[1] = VerifyingKey::from_bytes(&identity).unwrap();
    let got = outcomes(&envs, &keys);
    assert_eq!(got, alone(&envs, &keys));
    assert!(got[0].is_ok() && got[1].is_err() && got[2].is_ok(), "{got:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Any set of tampered envelopes: the batch outcome equals the single outcome, envelope by envelope.
    #[test]
    fn batch_outcomes_equal_single_outcomes(bad in proptest::collection::vec(any::<bool>(), 1..48)) {
        let (mut envs, keys) = fleet(bad.len() as u8);
        for (e, b) in envs.iter_mut().zip(&bad) {
            if *b {
                e.seq ^= 1 << 40;
            }
        }
        let got = outcomes(&envs, &keys);
        prop_assert_eq!(&got, &alone(&envs, &keys));
        let passed: Vec<bool> = got.iter().map(Result::is_ok).collect();
        let expected: Vec<bool> = bad.iter().map(|b| !b).collect();
        prop_assert_eq!(passed, expected);
    }
}
