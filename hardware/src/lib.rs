//! Halyard hardware layer: everything that touches a device's boot flags, slots, watchdog or power.
//!
//! Planned module map (see `docs/boot-contract.md` and issue 3):
//! - `slot`: the A/B slot identifier.
//! - `boot`: the `BootControl` trait (the whole bootloader contract) with backends `grubenv`
//!   (byte-compatible with `grub-editenv`), `ubootenv` (single and redundant copies, compatible with
//!   `fw_printenv`/`mkenvimage`) and `file` (the fake used by tests and the simulator).
//! - `block`: the `BlockDevice` trait with file, GPT-partition and raw-device backends, the slot writer,
//!   and `FaultyDevice` for power-cut and I/O-error injection.
//! - `watchdog`, `power`: Linux `/dev/watchdog` and reboot, each with a fake.
