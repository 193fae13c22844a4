//! Watchdogs: [`LinuxWatchdog`] drives `/dev/watchdog` through the kernel's ioctl interface
//! (`WDIOC_KEEPALIVE`, `WDIOC_SETTIMEOUT`, `WDIOC_GETTIMEOUT`, magic close `V`); [`FakeWatchdog`]
//! turns an expiry into a [`crate::power::PowerEvent::WatchdogReset`] under an injected [`Clock`].
//!
//! Once opened, a Linux watchdog reboots the box unless it is petted within its timeout. Dropping a
//! [`LinuxWatchdog`] without [`Watchdog::disarm`] leaves it armed on purpose: if the agent dies in the
//! middle of a trial boot, the box reboots and the bootloader counts the failed try.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::DeviceError;
use crate::power::{FakePower, PowerEvent};

/// A hardware (or fake) watchdog.
pub trait Watchdog: Send {
    /// Restart the countdown.
    fn keepalive(&mut self) -> Result<(), DeviceError>;
    /// Set the timeout; returns the timeout the device actually uses.
    fn set_timeout(&mut self, timeout: Duration) -> Result<Duration, DeviceError>;
    /// The current timeout.
    fn timeout(&mut self) -> Result<Duration, DeviceError>;
    /// Stop the watchdog (magic close), for an orderly shutdown of the agent.
    fn disarm(&mut self) -> Result<(), DeviceError>;
}

/// `/dev/watchdog` (or `/dev/watchdogN`).
#[derive(Debug)]
pub struct LinuxWatchdog {
    file: File,
    path: PathBuf,
}

/// The ioctls, with their opcodes from `<linux/watchdog.h>` (`'W'`, numbers 5, 6, 7, `int` argument).
mod ioctl {
    use rustix::ioctl::{Getter, Updater, ioctl, opcode};
    use std::ffi::c_int;
    use std::os::fd::AsFd;

    const KEEPALIVE: rustix::ioctl::Opcode = opcode::read::<c_int>(b'W', 5);
    const SET_TIMEOUT: rustix::ioctl::Opcode = opcode::read_write::<c_int>(b'W', 6);
    const GET_TIMEOUT: rustix::ioctl::Opcode = opcode::read::<c_int>(b'W', 7);

    /// The only unsafe code of the crate. Safety: each opcode is paired with the argument type the
    /// kernel's watchdog core reads or writes for it (a C `int`), per `<linux/watchdog.h>`; rustix
    /// passes a pointer to a properly sized, initialised (or `MaybeUninit` for getters) `c_int`.
    #[allow(unsafe_code)]
    pub(super) fn call<F: AsFd>(fd: F, op: Op) -> rustix::io::Result<c_int> {
        match op {
            Op::KeepAlive => {
                // The kernel ignores the argument; pass an initialised int so nothing reads garbage.
                let mut unused: c_int = 0;
                unsafe { ioctl(fd, Updater::<KEEPALIVE, c_int>::new(&mut unused)) }?;
                Ok(0)
            }
            Op::GetTimeout => unsafe { ioctl(fd, Getter::<GET_TIMEOUT, c_int>::new()) },
            Op::SetTimeout(mut secs) => {
                unsafe { ioctl(fd, Updater::<SET_TIMEOUT, c_int>::new(&mut secs)) }?;
                Ok(secs)
            }
        }
    }

    /// A watchdog ioctl request.
    pub(super) enum Op {
        KeepAlive,
        GetTimeout,
        SetTimeout(c_int),
    }
}

impl LinuxWatchdog {
    /// Open (and thereby arm) the watchdog device.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DeviceError> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| DeviceError::Io {
                backend: "linux-watchdog",
                path: path.clone(),
                op: "open",
                source,
            })?;
        Ok(Self { file, path })
    }

    fn call(&self, op: ioctl::Op, name: &'static str) -> Result<i32, DeviceError> {
        ioctl::call(&self.file, op).map_err(|e| self.err(name, e.into()))
    }

    fn err(&self, op: &'static str, source: std::io::Error) -> DeviceError {
        DeviceError::Io {
            backend: "linux-watchdog",
            path: self.path.clone(),
            op,
            source,
        }
    }
}

impl Watchdog for LinuxWatchdog {
    fn keepalive(&mut self) -> Result<(), DeviceError> {
        self.call(ioctl::Op::KeepAlive, "WDIOC_KEEPALIVE").map(|_| ())
    }

    fn set_timeout(&mut self, timeout: Duration) -> Result<Duration, DeviceError> {
        let secs = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        let actual = self.call(ioctl::Op::SetTimeout(secs), "WDIOC_SETTIMEOUT")?;
        Ok(Duration::from_secs(u64::try_from(actual).unwrap_or(0)))
    }

    fn timeout(&mut self) -> Result<Duration, DeviceError> {
        let secs = self.call(ioctl::Op::GetTimeout, "WDIOC_GETTIMEOUT")?;
        Ok(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
    }

    fn disarm(&mut self) -> Result<(), DeviceError> {
        self.file
            .write_all(b"V")
            .map_err(|e| self.err("magic close", e))?;
        self.file.flush().map_err(|e| self.err("magic close", e))
    }
}

/// Monotonic time for fakes.
pub trait Clock: std::fmt::Debug + Send {
    /// Time since an arbitrary origin.
    fn now(&self) -> Duration;
}

/// A clock that moves only when told to. Clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Move time forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// A watchdog whose expiry, seen by [`FakeWatchdog::poll`], is recorded as a reset on a [`FakePower`].
#[derive(Debug)]
pub struct FakeWatchdog<C: Clock> {
    clock: C,
    power: FakePower,
    timeout: Duration,
    last_pet: Duration,
    armed: bool,
}

impl<C: Clock> FakeWatchdog<C> {
    /// An armed watchdog with `timeout`, petted now.
    pub fn new(clock: C, power: FakePower, timeout: Duration) -> Self {
        let last_pet = clock.now();
        Self {
            clock,
            power,
            timeout,
            last_pet,
            armed: true,
        }
    }

    /// Check for expiry; on expiry record [`PowerEvent::WatchdogReset`], disarm (the box is
    /// rebooting) and return true.
    pub fn poll(&mut self) -> bool {
        if !self.armed || self.clock.now().saturating_sub(self.last_pet) < self.timeout {
            return false;
        }
        self.armed = false;
        self.power.record(PowerEvent::WatchdogReset);
        true
    }

    /// Whether it is counting.
    pub fn is_armed(&self) -> bool {
        self.armed
    }
}

impl<C: Clock> Watchdog for FakeWatchdog<C> {
    fn keepalive(&mut self) -> Result<(), DeviceError> {
        if !self.poll() {
            self.last_pet = self.clock.now();
        }
        Ok(())
    }

    fn set_timeout(&mut self, timeout: Duration) -> Result<Duration, DeviceError> {
        self.timeout = Duration::from_secs(timeout.as_secs().max(1));
        self.last_pet = self.clock.now();
        Ok(self.timeout)
    }

    fn timeout(&mut self) -> Result<Duration, DeviceError> {
        Ok(self.timeout)
    }

    fn disarm(&mut self) -> Result<(), DeviceError> {
        self.armed = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_expiry_becomes_a_reset_event() {
        let clock = ManualClock::new();
        let power = FakePower::new();
        let mut wd = FakeWatchdog::new(clock.clone(), power.clone(), Duration::from_secs(10));
        clock.advance(Duration::from_secs(9));
        wd.keepalive().unwrap();
        clock.advance(Duration::from_secs(9));
        assert!(!wd.poll());
        assert!(power.events().is_empty());
        clock.advance(Duration::from_secs(1));
        assert!(wd.poll());
        assert_eq!(power.events(), [PowerEvent::WatchdogReset]);
        assert!(!wd.poll(), "one reset per expiry");
    }

    #[test]
    fn disarmed_fake_never_fires() {
        let clock = ManualClock::new();
        let power = FakePower::new();
        let mut wd = FakeWatchdog::new(clock.clone(), power.clone(), Duration::from_secs(1));
        assert_eq!(
            wd.set_timeout(Duration::from_millis(10)).unwrap(),
            Duration::from_secs(1)
        );
        wd.disarm().unwrap();
        clock.advance(Duration::from_secs(60));
        assert!(!wd.poll());
        assert!(power.events().is_empty());
    }

    #[test]
    fn linux_watchdog_reports_the_path_on_failure() {
        let err = LinuxWatchdog::open("/nonexistent/watchdog").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/watchdog"), "{err}");
        // A regular file is not a watchdog: the ioctl must fail with ENOTTY, not crash.
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut wd = LinuxWatchdog::open(file.path()).unwrap();
        let err = wd.keepalive().unwrap_err();
        assert!(err.to_string().contains("WDIOC_KEEPALIVE"), "{err}");
        wd.disarm().unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap(), b"V");
    }
}
