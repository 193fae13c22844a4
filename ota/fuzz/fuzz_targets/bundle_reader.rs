//! Fuzz every parser of untrusted bundle bytes (header, signatures, manifest, root, payload streaming).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    halyard_ota::fuzzing::bundle_reader(data);
});
