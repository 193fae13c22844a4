//! PID 1 of Halyard OS, in the initramfs. The boot flow (`os/README.md` has the picture):
//!
//! 1. [`mounts::early`]: devtmpfs, proc, sysfs, tmpfs on `/run`.
//! 2. [`modules::load_all`]: the modules in `/lib/modules/load.order` with `finit_module`.
//! 3. [`disks::find`]: the GPT of each disk (read with `halyard_hardware`), partitions by name, and
//!    `/dev/disk/by-partlabel/NAME` links.
//! 4. [`slot::choose`]: the boot contract's bootloader step on `grubenv` of the state partition
//!    (count the try, fall back), exactly as GRUB would.
//! 5. [`mounts::root`]: the chosen slot's squashfs read-only, tmpfs on `/run` and `/tmp`, the data
//!    partition on `/data`, state on `/boot/state`; `halyard.slot=X` into `/run/halyard/cmdline`;
//!    then switch_root.
//! 6. [`net::up`]: `lo`, and `eth0` as 10.0.2.15/24 (QEMU user networking).
//! 7. [`supervise::run`]: starts the agent and the services of `/etc/halyard/services.toml`, reaps
//!    children, restarts those that ask for it, and on SIGTERM (reboot) or SIGUSR2 (power-off) stops
//!    everything, syncs, unmounts and calls reboot(2).

pub mod disks;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod power;
pub mod slot;
pub mod supervise;

use std::process::ExitCode;

/// Log a line on the console.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { eprintln!("halyard-init: {}", format_args!($($arg)*)) };
}

/// Boot, then supervise until shutdown (which does not return). Returns only when the boot failed
/// (the kernel then panics, and `panic=-1` reboots).
pub fn run() -> ExitCode {
    let started = std::time::Instant::now();
    match boot() {
        Ok(slot) => {
            say!(
                "slot {slot} up in {} ms, starting services",
                started.elapsed().as_millis()
            );
            supervise::run()
        }
        Err(e) => {
            say!("boot failed: {e}");
            power::halt(power::Kind::Reboot)
        }
    }
}

fn boot() -> Result<halyard_hardware::Slot, String> {
    mounts::early()?;
    modules::load_all(std::path::Path::new("/lib/modules"))?;
    let parts = disks::find(std::time::Duration::from_secs(10))?;
    let slot = slot::choose(&parts)?;
    mounts::root(&parts, slot)?;
    if let Err(e) = net::up() {
        say!("network: {e}");
    }
    Ok(slot)
}
