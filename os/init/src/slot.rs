//! The bootloader's step of the boot contract, done here instead of in GRUB: read `grubenv` on the
//! state partition, give up exhausted trials, pick the slot, count the try, record `HALYARD_BOOTED`,
//! save only when something changed (`halyard_hardware::boot::SimulatedBoot`, which applies
//! `boot_attempt`, the same function the GRUB and U-Boot scripts are tested against).

use halyard_hardware::Slot;
use halyard_hardware::boot::grubenv::GrubEnv;
use halyard_hardware::boot::{CurrentSlotSource, EnvBootControl, SimulatedBoot};

use crate::disks::Partitions;
use crate::{mounts, say};

/// Mount the state partition and choose the slot to boot. Without a readable environment the
/// contract's last resort applies: slot A, nothing written.
pub fn choose(parts: &Partitions) -> Result<Slot, String> {
    mounts::state(parts)?;
    let env = format!("{}/grubenv", mounts::STATE_EARLY);
    let attempt = GrubEnv::open_file(&env)
        .map(|store| EnvBootControl::new(store, CurrentSlotSource::Env))
        .and_then(|mut control| control.simulate_boot());
    match attempt {
        Ok(slot) => {
            say!("boot environment {env}: booting slot {slot}");
            Ok(slot)
        }
        Err(e) => {
            say!("boot environment {env}: {e}; booting slot A");
            Ok(Slot::A)
        }
    }
}
