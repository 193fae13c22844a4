//! Halyard hardware layer: everything that touches a device's boot flags, slots, watchdog or power.
//!
//! Module map (the contract is `docs/boot-contract.md`):
//! - [`slot`]: the A/B [`Slot`] identifier.
//! - [`boot`]: the [`boot::BootControl`] trait (the whole bootloader contract), the bootloader's own
//!   selection step [`boot::select::boot_attempt`], and the backends [`boot::grubenv`]
//!   (`grub-editenv` compatible), [`boot::ubootenv`] (`fw_printenv`/`fw_setenv`/`mkenvimage`
//!   compatible, single and redundant copies) and [`boot::file`] (the fake).
//! - [`block`]: the [`block::BlockDevice`] trait with file, raw-device, GPT-partition and in-memory
//!   backends, the slot writer, and [`block::faulty::FaultyDevice`] for power cuts and I/O errors.
//! - [`watchdog`], [`power`]: `/dev/watchdog` and reboot, each with a fake.
//! - [`conformance`]: the suite every boot backend passes.
//! - [`error`]: error types naming backend, path and slot.
//! - `fuzzing` (hidden): bodies of the cargo-fuzz targets in `hardware/fuzz/`.
//!
//! The bootloader side of the contract ships in `hardware/boot/` (`grub.cfg`, `uboot-boot.cmd`).

pub mod block;
pub mod boot;
pub mod conformance;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod power;
pub mod slot;
pub mod watchdog;

pub use error::{BlockError, BootError, DeviceError};
pub use slot::Slot;
