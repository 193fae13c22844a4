//! Fuzz the parsers of names that arrive from outside: MQTT topics (the server reads the device id
//! and the kind out of every topic the broker hands it), device ids and SHA-256 digests (both arrive in
//! URL paths). Nothing may panic, and whatever parses writes back to the same text.
#![no_main]

use halyard_protocol::{DeviceId, Sha256, Topic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((device, topic)) = Topic::parse(text) {
        assert_eq!(topic.for_device(&device), text, "topic round trip");
    }
    if let Ok(device) = DeviceId::new(text) {
        assert_eq!(device.as_str(), text, "device id round trip");
    }
    if let Ok(digest) = Sha256::parse(text) {
        assert_eq!(digest.to_hex(), text, "digest round trip");
    }
});
