//! Bodies of the cargo-fuzz targets in `hardware/fuzz/`, as plain functions so stable-toolchain tests
//! run them too (`tests/fuzz_smoke.rs`). Not a public API.
//!
//! A boot environment is read from flash the bootloader, a previous agent or a torn write left
//! behind: the agent must never panic on it. Each body parses the bytes, then drives the whole
//! [`BootControl`] over them (read every slot, change every flag, simulate a boot), and checks the
//! round trips that must hold.

use crate::block::MemDevice;
use crate::boot::grubenv::{GrubEnv, GrubEnvBlock};
use crate::boot::ubootenv::{self, Layout, UBootEnv};
use crate::boot::{BootControl, CurrentSlotSource, EnvBootControl, EnvStore, SimulatedBoot};
use crate::slot::Slot;

/// Fuzz body: a GRUB environment block. Must never panic.
pub fn grubenv(data: &[u8]) {
    let Ok(block) = GrubEnvBlock::from_bytes(data.to_vec()) else {
        return;
    };
    let _ = block.is_broken();
    let vars = block.vars();
    let size = block.as_bytes().len();
    // Names as `vars()` sees them, and as a line-by-line reader would (they differ on odd blocks).
    let line_names = data
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line.split(|&b| b == b'=').next()?).ok());
    let names: Vec<&str> = vars.iter().map(|(n, _)| n).chain(line_names).take(16).collect();
    for name in names {
        let mut edited = block.clone();
        if edited.set(name, "1").is_ok() {
            assert_eq!(edited.as_bytes().len(), size, "set changed the block size");
        }
        let mut edited = block.clone();
        if edited.unset(name).is_ok() {
            assert_eq!(edited.as_bytes().len(), size, "unset changed the block size");
        }
    }
    // Not asserted: that `vars()` then yields the value. GRUB reads a line without `=` as the start of
    // the next name (`grub_envblk_iterate`), so on such a block neither GRUB nor we see it.
    let mut edited = block;
    if edited.set("halyard_fuzz", "a\\b\nc").is_ok() {
        assert_eq!(edited.as_bytes().len(), size, "set changed the block size");
        let _ = edited.vars();
    }
    drive(GrubEnv::new(MemDevice::from_bytes("grubenv", data.to_vec())));
}

/// Fuzz body: a U-Boot environment image. The first byte picks the layout (bit 0: redundant, the rest
/// split in two copies) and whether to fix up the CRC (bit 1) so the fuzzer gets past it. Must
/// never panic.
pub fn ubootenv(data: &[u8]) {
    let Some((&mode, image)) = data.split_first() else {
        return;
    };
    let layout = if mode & 1 == 0 {
        Layout::Single
    } else {
        Layout::Redundant
    };
    let mut image = image.to_vec();
    if mode & 2 != 0 {
        fix_crc(&mut image, layout);
    }
    let size = match layout {
        Layout::Single => image.len(),
        Layout::Redundant => image.len() / 2,
    };
    decode_roundtrip(&image[..size], layout);
    let dev = MemDevice::from_bytes("uboot.env", image);
    let env = match layout {
        Layout::Single => UBootEnv::single(dev, 0, size),
        Layout::Redundant => UBootEnv::redundant((dev.clone(), 0), (dev, size as u64), size),
    };
    drive(env);
}

/// Store the right CRC32 for `image`'s data area (each copy's, when redundant).
fn fix_crc(image: &mut [u8], layout: Layout) {
    let copies = match layout {
        Layout::Single => 1,
        Layout::Redundant => 2,
    };
    let size = image.len() / copies;
    for copy in image.chunks_mut(size.max(1)).take(copies) {
        if copy.len() > layout.header_len() {
            let crc = crc32fast::hash(&copy[layout.header_len()..]);
            copy[..4].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// What decodes re-encodes (when it fits) to an image that decodes to the same variables.
fn decode_roundtrip(image: &[u8], layout: Layout) {
    let Ok((vars, flags)) = ubootenv::decode(image, layout) else {
        return;
    };
    if let Ok(encoded) = ubootenv::encode(&vars, image.len(), layout, flags) {
        assert_eq!(encoded.len(), image.len(), "encode changed the image size");
        match ubootenv::decode(&encoded, layout) {
            Ok((again, again_flags)) => {
                assert_eq!(again, vars.sorted(), "variables changed in a round trip");
                assert_eq!(again_flags, flags, "flags changed in a round trip");
            }
            Err(e) => panic!("a re-encoded image does not decode: {e:?}"),
        }
    }
}

/// Every [`BootControl`] operation over `store`; errors are fine, panics are not.
fn drive<S: EnvStore>(store: S) {
    let mut control = EnvBootControl::new(store, CurrentSlotSource::Env);
    let _ = control.current_slot();
    let _ = control.slot_state(Slot::A);
    let _ = control.slot_state(Slot::B);
    let _ = control.set_next(Slot::B, 3);
    let _ = control.mark_successful(Slot::A);
    let _ = control.simulate_boot();
    let _ = control.mark_unbootable(Slot::B);
    let _ = control.slot_state(Slot::B);
}
