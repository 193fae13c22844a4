//! Mounts: the early pseudo filesystems, then the new root (chosen slot read-only, tmpfs, data, state)
//! and the switch into it.

use std::ffi::CStr;
use std::path::Path;

use rustix::mount::{MountFlags, mount, mount_move};

use crate::disks::Partitions;
use crate::say;
use halyard_hardware::Slot;

fn mkdir(path: &str) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("mkdir {path}: {e}"))
}

fn mnt(src: &str, target: &str, fstype: &str, flags: MountFlags, data: &CStr) -> Result<(), String> {
    mkdir(target)?;
    mount(src, target, fstype, flags, data).map_err(|e| format!("mount {src} on {target} ({fstype}): {e}"))
}

/// `/dev` (devtmpfs), `/proc`, `/sys`, `/run` (tmpfs) in the initramfs.
pub fn early() -> Result<(), String> {
    let quiet = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV;
    mnt("devtmpfs", "/dev", "devtmpfs", MountFlags::NOSUID, c"mode=0755")?;
    mnt("proc", "/proc", "proc", quiet, c"")?;
    mnt("sysfs", "/sys", "sysfs", quiet, c"")?;
    mnt(
        "tmpfs",
        "/run",
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=0755",
    )
}

/// Where the state partition is mounted before the switch (the boot environment is read there).
pub const STATE_EARLY: &str = "/state";

/// Mount the state partition read-write at [`STATE_EARLY`].
pub fn state(parts: &Partitions) -> Result<(), String> {
    let dev = parts.device("state")?;
    mnt(
        &dev,
        STATE_EARLY,
        "ext4",
        MountFlags::NOATIME | MountFlags::NOSUID | MountFlags::NODEV,
        c"",
    )
}

/// Mount the new root for `slot` at `/newroot` and switch into it.
pub fn root(parts: &Partitions, slot: Slot) -> Result<(), String> {
    let name = match slot {
        Slot::A => "root-a",
        Slot::B => "root-b",
    };
    let dev = parts.device(name)?;
    mnt(&dev, "/newroot", "squashfs", MountFlags::RDONLY, c"")?;
    let writable = MountFlags::NOSUID | MountFlags::NODEV;
    mnt("tmpfs", "/newroot/run", "tmpfs", writable, c"mode=0755")?;
    mnt("tmpfs", "/newroot/tmp", "tmpfs", writable, c"mode=1777")?;
    match parts.device("data") {
        Ok(data) => {
            if let Err(e) = mnt(
                &data,
                "/newroot/data",
                "ext4",
                writable | MountFlags::NOATIME,
                c"",
            ) {
                say!("{e} (continuing without persistent data)");
            }
        }
        Err(e) => say!("{e} (continuing without persistent data)"),
    }
    mkdir("/newroot/run/halyard")?;
    let slot_file = "/newroot/run/halyard/cmdline";
    std::fs::write(slot_file, format!("halyard.slot={slot}\n")).map_err(|e| format!("{slot_file}: {e}"))?;
    for (from, to) in [
        (STATE_EARLY, "/newroot/boot/state"),
        ("/dev", "/newroot/dev"),
        ("/proc", "/newroot/proc"),
        ("/sys", "/newroot/sys"),
    ] {
        mount_move(from, to).map_err(|e| format!("moving {from} to {to}: {e}"))?;
    }
    switch_root(Path::new("/newroot"))
}

fn switch_root(new: &Path) -> Result<(), String> {
    std::env::set_current_dir(new).map_err(|e| format!("chdir {}: {e}", new.display()))?;
    mount_move(".", "/").map_err(|e| format!("moving {} to /: {e}", new.display()))?;
    rustix::process::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))
}

/// Unmount the writable filesystems before power-off (remount read-only when busy).
pub fn release() {
    rustix::fs::sync();
    for target in ["/data", "/boot/state"] {
        if rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()).is_err()
            && let Err(e) = rustix::mount::mount_remount(target, MountFlags::RDONLY, "")
        {
            say!("cannot unmount or remount {target} read-only: {e}");
        }
    }
    rustix::fs::sync();
}
