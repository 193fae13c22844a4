//! Shutdown: `reboot`/`poweroff` (this binary under those names) signal PID 1; PID 1 stops its
//! children, syncs, unmounts and calls reboot(2).

use rustix::process::{Pid, Signal, kill_process};
use rustix::system::{RebootCommand, reboot};

use crate::{mounts, say};

/// What to do at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Restart the machine (under QEMU `-no-reboot`: end the run).
    Reboot,
    /// Power off.
    PowerOff,
}

/// `reboot` → SIGTERM to PID 1, `poweroff` → SIGUSR2 (busybox's convention).
pub fn request(name: &str) -> Result<(), String> {
    let signal = if name == "poweroff" {
        Signal::USR2
    } else {
        Signal::TERM
    };
    kill_process(Pid::INIT, signal).map_err(|e| format!("signalling PID 1: {e}"))
}

/// Release the filesystems and reboot or power off. Never returns.
pub fn halt(kind: Kind) -> ! {
    mounts::release();
    say!("{kind:?}");
    let cmd = match kind {
        Kind::Reboot => RebootCommand::Restart,
        Kind::PowerOff => RebootCommand::PowerOff,
    };
    if let Err(e) = reboot(cmd) {
        say!("reboot(2): {e}");
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
