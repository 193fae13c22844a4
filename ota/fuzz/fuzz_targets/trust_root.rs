//! Fuzz the trust root: parse, trust on its own, rotate from the fixture root, re-signed variants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    halyard_ota::fuzzing::trust_root(data);
});
