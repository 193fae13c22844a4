//! Fuzz the receiver's path for untrusted MQTT payloads: size cap, JSON parse, signature check, payload
//! parse for every kind, and the sequence guard. Nothing may panic. Each decoded envelope is also
//! re-signed with the harness key, so the fuzzer reaches the payload parsers behind the signature check.
#![no_main]

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use halyard_protocol::{Desired, Envelope, Event, Presence, Report, SeqGuard};
use libfuzzer_sys::fuzz_target;

fn open_all(env: &Envelope, key: &ed25519_dalek::VerifyingKey) {
    let _ = env.open::<Desired>(key);
    let _ = env.open::<Report>(key);
    let _ = env.open::<Event>(key);
    let _ = env.open::<Presence>(key);
    let _ = SeqGuard::default().check(env);
}

fuzz_target!(|data: &[u8]| {
    let signer = SigningKey::from_bytes(&[7; 32]);
    let key = signer.verifying_key();
    if let Ok(mut env) = Envelope::decode(data) {
        open_all(&env, &key);
        let sig = signer.sign(&env.signed_bytes()).to_bytes();
        env.sig = base64::engine::general_purpose::STANDARD.encode(sig);
        open_all(&env, &key);
        assert_eq!(Envelope::decode(&env.encode()).ok().as_ref(), Some(&env), "envelope round trip");
    }
});
