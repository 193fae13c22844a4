//! Fuzz the receiver's path for untrusted MQTT payloads: size cap, JSON parse, signature check, payload
//! parse for every kind, and the sequence guard. Nothing may panic.
#![no_main]

use ed25519_dalek::SigningKey;
use halyard_protocol::{Desired, Envelope, Event, Presence, Report, SeqGuard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    if let Ok(env) = Envelope::decode(data) {
        let _ = env.open::<Desired>(&key);
        let _ = env.open::<Report>(&key);
        let _ = env.open::<Event>(&key);
        let _ = env.open::<Presence>(&key);
        let _ = SeqGuard::default().check(&env);
    }
});
