//! Power: [`LinuxPower`] reboots the machine (reboot(2) after sync, or a command such as
//! `/sbin/reboot` so init shuts down cleanly); [`FakePower`] records a [`PowerEvent`] instead.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::DeviceError;

/// Something that can restart the machine.
pub trait Power: Send {
    /// Restart now. On real hardware this does not return on success.
    fn reboot(&mut self) -> Result<(), DeviceError>;
}

/// How [`LinuxPower`] reboots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebootMethod {
    /// `sync()` then `reboot(RB_AUTOBOOT)`: for an agent that is (or stands in for) PID 1.
    Syscall,
    /// Run this program (e.g. `/sbin/reboot`) and let init shut down.
    Command(PathBuf),
}

/// The real machine.
#[derive(Debug, Clone)]
pub struct LinuxPower {
    method: RebootMethod,
}

impl LinuxPower {
    /// Reboot with `method`.
    pub fn new(method: RebootMethod) -> Self {
        Self { method }
    }
}

impl Power for LinuxPower {
    fn reboot(&mut self) -> Result<(), DeviceError> {
        tracing::warn!(method = ?self.method, "rebooting");
        let err = |path: PathBuf, op, source| DeviceError::Io {
            backend: "linux-power",
            path,
            op,
            source,
        };
        match &self.method {
            RebootMethod::Syscall => {
                rustix::fs::sync();
                rustix::system::reboot(rustix::system::RebootCommand::Restart)
                    .map_err(|e| err(PathBuf::from("reboot(2)"), "reboot", e.into()))
            }
            RebootMethod::Command(program) => {
                let status = std::process::Command::new(program)
                    .status()
                    .map_err(|e| err(program.clone(), "spawn", e))?;
                if status.success() {
                    return Ok(());
                }
                let source = std::io::Error::other(format!("exited with {status}"));
                Err(err(program.clone(), "reboot command", source))
            }
        }
    }
}

/// What happened to a fake machine's power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    /// Software asked for a reboot.
    Reboot,
    /// The watchdog expired.
    WatchdogReset,
}

/// A fake machine: reboots become events. Clones share the event log.
#[derive(Debug, Clone, Default)]
pub struct FakePower {
    events: Arc<Mutex<Vec<PowerEvent>>>,
}

impl FakePower {
    /// No events yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append an event (used by [`crate::watchdog::FakeWatchdog`]).
    pub fn record(&self, event: PowerEvent) {
        tracing::info!(?event, "fake power event");
        self.lock().push(event);
    }

    /// All events so far.
    pub fn events(&self) -> Vec<PowerEvent> {
        self.lock().clone()
    }

    /// Remove and return all events (the simulator consumes them to reboot the device).
    pub fn take_events(&self) -> Vec<PowerEvent> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<PowerEvent>> {
        // Pushing a Copy value cannot leave the Vec inconsistent, so a poisoned lock is still usable.
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Power for FakePower {
    fn reboot(&mut self) -> Result<(), DeviceError> {
        self.record(PowerEvent::Reboot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_reboot_is_an_event() {
        let mut power = FakePower::new();
        let view = power.clone();
        power.reboot().unwrap();
        assert_eq!(view.take_events(), [PowerEvent::Reboot]);
        assert!(view.events().is_empty());
    }

    #[test]
    fn command_reboot_reports_failure() {
        let mut ok = LinuxPower::new(RebootMethod::Command("/bin/true".into()));
        ok.reboot().unwrap();
        let mut bad = LinuxPower::new(RebootMethod::Command("/bin/false".into()));
        let err = bad.reboot().unwrap_err().to_string();
        assert!(err.contains("/bin/false"), "{err}");
    }
}
