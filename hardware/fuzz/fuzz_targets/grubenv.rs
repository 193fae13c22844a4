//! Fuzz the GRUB environment block: parse, edit, and drive `BootControl` over it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    halyard_hardware::fuzzing::grubenv(data);
});
