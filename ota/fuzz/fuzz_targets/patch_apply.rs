//! Fuzz the streaming delta decoder: `apply(&fixed_source, data, sink)`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    halyard_ota::fuzzing::patch_apply(data);
});
