//! Boot control: the [`BootControl`] trait (the whole bootloader contract) and its backends.
//!
//! Every backend is an [`EnvStore`] (a place that loads and stores [`EnvVars`]) under one generic
//! [`EnvBootControl`], so the contract's rules live once, in [`select`]:
//! - [`grubenv`]: the GRUB environment block, byte-compatible with `grub-editenv`.
//! - [`ubootenv`]: the U-Boot environment (CRC32; single or redundant copies), compatible with
//!   `fw_printenv`/`fw_setenv` and `mkenvimage`.
//! - [`file`](mod@file): a plain `key=value` file written by temp + rename, the fake for tests and the simulator.
//!
//! Each store writes through a [`crate::block::BlockDevice`] (or a file), so a
//! [`crate::block::faulty::FaultyDevice`] can cut power in the middle of an environment update.

pub mod file;
pub mod grubenv;
pub mod select;
pub mod ubootenv;
pub mod vars;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::BootError;
use crate::slot::Slot;
use select::{BootEnv, MAX_TRIES, boot_attempt};
use vars::EnvVars;

/// What the bootloader knows about one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    /// The bootloader may pick it (priority > 0 and successful or tries left).
    pub bootable: bool,
    /// The running system marked it good.
    pub successful: bool,
    /// Boots left while not successful.
    pub tries_left: u8,
    /// 0 = never; the higher bootable slot wins.
    pub priority: u8,
}

/// The whole bootloader contract, as the running system sees it.
pub trait BootControl: Send {
    /// Backend name for logs.
    fn backend(&self) -> &'static str;
    /// The slot the system is running from.
    fn current_slot(&mut self) -> Result<Slot, BootError>;
    /// The stored state of `slot`.
    fn slot_state(&mut self, slot: Slot) -> Result<SlotState, BootError>;
    /// Boot `slot` next, at most `tries` times (1..=[`MAX_TRIES`]) unless it is marked successful; the
    /// other slot stays the fallback.
    fn set_next(&mut self, slot: Slot, tries: u8) -> Result<(), BootError>;
    /// The running system vouches for `slot`: stop counting, keep booting it.
    fn mark_successful(&mut self, slot: Slot) -> Result<(), BootError>;
    /// Never boot `slot` (before rewriting it, or after it failed its health checks).
    fn mark_unbootable(&mut self, slot: Slot) -> Result<(), BootError>;
}

/// A backend that can also play the bootloader: apply [`boot_attempt`] to its own environment, as the
/// GRUB or U-Boot script would at power-on. Fakes and the simulator "reboot" with it.
pub trait SimulatedBoot {
    /// Run the bootloader's selection step, save the environment, and return the slot booted.
    fn simulate_boot(&mut self) -> Result<Slot, BootError>;
}

/// A place where bootloader variables live.
pub trait EnvStore: fmt::Debug + Send {
    /// Backend name: `grubenv`, `ubootenv`, `file`.
    fn backend(&self) -> &'static str;
    /// Path of the environment (file or device).
    fn location(&self) -> &Path;
    /// Read all variables.
    fn load(&mut self) -> Result<EnvVars, BootError>;
    /// Replace all variables, as crash-safely as the format allows.
    fn store(&mut self, vars: &EnvVars) -> Result<(), BootError>;
}

/// A boxed store is a store: the agent picks its backend at start-up behind `Box<dyn EnvStore>`.
impl<S: EnvStore + ?Sized> EnvStore for Box<S> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn location(&self) -> &Path {
        (**self).location()
    }
    fn load(&mut self) -> Result<EnvVars, BootError> {
        (**self).load()
    }
    fn store(&mut self, vars: &EnvVars) -> Result<(), BootError> {
        (**self).store(vars)
    }
}

/// Where the running slot is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentSlotSource {
    /// `HALYARD_BOOTED` in the environment, written by the bootloader script at each boot.
    Env,
    /// `halyard.slot=A|B` on the kernel command line (normally `/proc/cmdline`), put there by the
    /// bootloader script; right even when the bootloader could not save its environment.
    KernelCmdline(PathBuf),
}

/// [`BootControl`] over any [`EnvStore`]: every backend shares these rules.
#[derive(Debug)]
pub struct EnvBootControl<S: EnvStore> {
    store: S,
    current: CurrentSlotSource,
}

impl<S: EnvStore> EnvBootControl<S> {
    /// Boot control over `store`, learning the running slot from `current`.
    pub fn new(store: S, current: CurrentSlotSource) -> Self {
        Self { store, current }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Give the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Write every Halyard variable with its factory value (slot A good and booted, slot B empty),
    /// keeping other variables. Done once when the image is built, so that later updates only
    /// change single-character values in place and never grow the environment.
    pub fn provision(&mut self) -> Result<(), BootError> {
        let mut vars = self.store.load().unwrap_or_default();
        let env = BootEnv {
            booted: Some(Slot::A),
            ..BootEnv::factory()
        };
        env.write_to(&mut vars);
        self.store.store(&vars)
    }

    /// The Halyard variables as currently stored.
    pub fn boot_env(&mut self) -> Result<BootEnv, BootError> {
        Ok(BootEnv::from_vars(&self.store.load()?))
    }

    /// Load, change, and store only if a variable changed (flash wear, fewer crash windows).
    fn update(
        &mut self,
        op: &'static str,
        slot: Slot,
        change: impl FnOnce(&mut BootEnv),
    ) -> Result<(), BootError> {
        let mut vars = self.store.load().map_err(|e| self.op_err(op, slot, e))?;
        let mut env = BootEnv::from_vars(&vars);
        change(&mut env);
        let changed = env.write_to(&mut vars);
        if changed {
            self.store.store(&vars).map_err(|e| self.op_err(op, slot, e))?;
        }
        tracing::info!(backend = self.store.backend(), op, %slot, changed, "boot environment updated");
        Ok(())
    }
}

impl<S: EnvStore> EnvBootControl<S> {
    fn op_err(&self, op: &'static str, slot: Slot, source: BootError) -> BootError {
        let (backend, path) = (self.store.backend(), self.store.location().to_path_buf());
        BootError::Operation {
            backend,
            path,
            op,
            slot,
            source: Box::new(source),
        }
    }
}

fn slot_from_cmdline(backend: &'static str, path: &Path) -> Result<Slot, BootError> {
    let unknown = |reason: String| BootError::CurrentSlotUnknown {
        backend,
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| unknown(e.to_string()))?;
    let value = text
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("halyard.slot="))
        .ok_or_else(|| unknown("no halyard.slot= argument".into()))?;
    value
        .parse()
        .map_err(|e: crate::slot::ParseSlotError| unknown(e.to_string()))
}

impl<S: EnvStore> BootControl for EnvBootControl<S> {
    fn backend(&self) -> &'static str {
        self.store.backend()
    }

    fn current_slot(&mut self) -> Result<Slot, BootError> {
        match &self.current {
            CurrentSlotSource::Env => self
                .boot_env()?
                .booted
                .ok_or_else(|| BootError::CurrentSlotUnknown {
                    backend: self.store.backend(),
                    path: self.store.location().to_path_buf(),
                    reason: format!("{} is not set", select::VAR_BOOTED),
                }),
            CurrentSlotSource::KernelCmdline(path) => slot_from_cmdline(self.store.backend(), path),
        }
    }

    fn slot_state(&mut self, slot: Slot) -> Result<SlotState, BootError> {
        Ok(self.boot_env()?.state(slot))
    }

    fn set_next(&mut self, slot: Slot, tries: u8) -> Result<(), BootError> {
        if !(1..=MAX_TRIES).contains(&tries) {
            return Err(BootError::InvalidTries {
                backend: self.store.backend(),
                path: self.store.location().to_path_buf(),
                slot,
                tries,
                max: MAX_TRIES,
            });
        }
        self.update("set_next", slot, |env| env.set_next(slot, tries))
    }

    fn mark_successful(&mut self, slot: Slot) -> Result<(), BootError> {
        self.update("mark_successful", slot, |env| env.mark_successful(slot))
    }

    fn mark_unbootable(&mut self, slot: Slot) -> Result<(), BootError> {
        self.update("mark_unbootable", slot, |env| env.mark_unbootable(slot))
    }
}

impl<S: EnvStore> SimulatedBoot for EnvBootControl<S> {
    fn simulate_boot(&mut self) -> Result<Slot, BootError> {
        let mut vars = self.store.load()?;
        let (slot, next) = boot_attempt(&BootEnv::from_vars(&vars));
        if next.write_to(&mut vars) {
            self.store.store(&vars)?;
        }
        tracing::info!(backend = self.store.backend(), %slot, "simulated bootloader picked a slot");
        Ok(slot)
    }
}
