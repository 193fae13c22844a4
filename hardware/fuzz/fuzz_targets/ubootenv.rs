//! Fuzz the U-Boot environment (single and redundant): decode, re-encode, and drive `BootControl`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    halyard_hardware::fuzzing::ubootenv(data);
});
