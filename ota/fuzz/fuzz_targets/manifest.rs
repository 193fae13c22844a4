//! Fuzz the manifest parser (canonical JSON, validation) and the round trip of what it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    halyard_ota::fuzzing::manifest(data);
});
