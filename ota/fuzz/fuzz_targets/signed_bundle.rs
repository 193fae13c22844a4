//! Fuzz a bundle whose manifest the harness signs: manifest, policy and payload streaming past the
//! signature check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    halyard_ota::fuzzing::signed_bundle(data);
});
