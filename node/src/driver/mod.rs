//! The I/O shell around [`crate::fsm`]: feeds events, performs the actions in order against injected
//! hardware ([`Hardware`]), a [`Fetcher`], a [`Clock`] and [`CrashPoints`], and journals before every
//! side effect (the state machine puts `Journal` first).
//!
//! Life cycle: [`Driver::start`] loads the journal (or starts fresh), asks the bootloader which slot
//! runs, hashes it, and feeds `Booted`; [`Driver::desired`] feeds the server's desired state;
//! [`Driver::settle`] runs queued and timer events until the machine waits for the outside world or
//! asked for a reboot ([`Halt`]). Messages for the server collect in an outbox until transports exist.
//! The actions themselves live in `driver/actions.rs`.

mod actions;
mod partial;

pub use partial::VALIDATOR_FILE;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use halyard_hardware::block::BlockDevice;
use halyard_hardware::block::slot_writer::hash_prefix;
use halyard_hardware::boot::BootControl;
use halyard_hardware::power::Power;
use halyard_hardware::watchdog::Watchdog;
use halyard_hardware::{BlockError, BootError, DeviceError};
use halyard_ota::limits::Limits;
use halyard_ota::manifest::Name;
use halyard_ota::root::TrustedRoot;
use halyard_protocol::{DesiredAction, Report, Sha256, Slot};

use crate::clock::Clock;
use crate::durable::FileError;
use crate::faults::{CrashPoints, PowerLost};
use crate::fetch::Fetcher;
use crate::files::Files;
use crate::fsm::{self, Event, Image, InvalidTransition, Policy, Running, State};
use crate::health::Check;
use crate::journal::{Journal, JournalError, Loaded, Record};

/// The device, as the agent drives it. Slots are indexed A = 0, B = 1.
pub struct Hardware {
    /// The bootloader contract.
    pub boot: Box<dyn BootControl>,
    /// Slot A and slot B.
    pub slots: [Box<dyn BlockDevice>; 2],
    /// Reboot.
    pub power: Box<dyn Power>,
    /// The watchdog petted during trials.
    pub watchdog: Box<dyn Watchdog>,
    /// The data partition holding the journal and the download validator (`Settings::data_dir` names
    /// the directory; the download itself is a file there).
    pub files: Arc<dyn Files>,
}

impl std::fmt::Debug for Hardware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hardware")
            .field("boot", &self.boot.backend())
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// Health checks of a trial.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// The checks; all must pass.
    pub checks: Vec<Check>,
    /// How long they must keep passing.
    pub stability_window: Duration,
    /// Time between rounds.
    pub interval: Duration,
    /// A new image may fail its checks this long after its trial starts while its services come
    /// up; the stability window starts at the first round that passes. Zero: the first failure
    /// rolls back.
    pub startup_grace: Duration,
}

/// What the driver needs to know about the device and its trust.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Journal, identity and download file live here.
    pub data_dir: PathBuf,
    /// The product bundles must be built for.
    pub product: Name,
    /// Hardware class for reports.
    pub hardware_class: String,
    /// Release trust root.
    pub root: TrustedRoot,
    /// Bundle size caps.
    pub limits: Limits,
    /// State machine tunables.
    pub policy: Policy,
    /// Trial health checks.
    pub health: HealthSettings,
    /// Download chunk size (bytes per range request and per fsync).
    pub chunk: u64,
    /// Attempts per chunk on transient fetch errors.
    pub fetch_attempts: u32,
    /// The image the device shipped with, in the slot it first boots.
    pub factory: Image,
}

/// A message for the server (sealed and sent by the transports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A state transition.
    Event(halyard_protocol::Event),
    /// The full report.
    Report(Report),
}

/// Why [`Driver::settle`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halt {
    /// Waiting for a desired state, a window or time.
    Waiting,
    /// A reboot was requested: drop the driver and restart the machine.
    Rebooting,
}

/// The driver failed; the journal holds the last durable state, so a restart resumes from it.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Journal I/O.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Download file I/O.
    #[error(transparent)]
    File(#[from] FileError),
    /// Boot control.
    #[error("boot control: {0}")]
    Boot(#[from] BootError),
    /// Reading a slot.
    #[error("slot: {0}")]
    Block(#[from] BlockError),
    /// Power or watchdog.
    #[error("device: {0}")]
    Device(#[from] DeviceError),
    /// A crash test cut the power.
    #[error(transparent)]
    PowerLost(#[from] PowerLost),
    /// An internal event the state machine refused (a bug).
    #[error(transparent)]
    Fsm(#[from] InvalidTransition),
}

/// The agent's driver.
#[derive(Debug)]
pub struct Driver {
    settings: Settings,
    hw: Hardware,
    fetcher: Box<dyn Fetcher>,
    clock: Arc<dyn Clock>,
    crash: Arc<dyn CrashPoints>,
    journal: Journal,
    record: Record,
    active: Slot,
    active_sha256: Option<Sha256>,
    queue: VecDeque<Event>,
    outbox: Vec<Outgoing>,
    rebooting: bool,
    deferred: Option<(Option<String>, DesiredAction)>,
}

/// The hardware crate's slot for a wire slot.
pub fn hw_slot(slot: Slot) -> halyard_hardware::Slot {
    match slot {
        Slot::A => halyard_hardware::Slot::A,
        Slot::B => halyard_hardware::Slot::B,
    }
}

/// The wire slot for a hardware slot.
pub fn wire_slot(slot: halyard_hardware::Slot) -> Slot {
    match slot {
        halyard_hardware::Slot::A => Slot::A,
        halyard_hardware::Slot::B => Slot::B,
    }
}

impl Driver {
    /// Start after a boot: load or create the journal, identify the running slot, feed `Booted`, settle.
    pub fn start(
        settings: Settings,
        mut hw: Hardware,
        fetcher: Box<dyn Fetcher>,
        clock: Arc<dyn Clock>,
        crash: Arc<dyn CrashPoints>,
    ) -> Result<(Self, Halt), DriverError> {
        let journal = Journal::in_files(hw.files.clone(), &settings.data_dir, crash.clone());
        let active = wire_slot(hw.boot.current_slot()?);
        let loaded = journal.load_or_recover(|| Record::fresh(active, settings.factory.clone()))?;
        if !matches!(loaded, Loaded::Found(_)) {
            journal.store(loaded.record())?;
        }
        let record = loaded.record().clone();
        let active_sha256 = match record.images.get(active) {
            Some(image) => Some(Sha256(hash_prefix(&mut hw.slots[hw_index(active)], image.size)?)),
            None => None,
        };
        tracing::info!(slot = ?active, state = record.state.name(), "agent started");
        let mut driver = Self {
            settings,
            hw,
            fetcher,
            clock,
            crash,
            journal,
            record,
            active,
            active_sha256,
            queue: VecDeque::new(),
            outbox: Vec::new(),
            rebooting: false,
            deferred: None,
        };
        driver.queue.push_back(Event::Booted {
            slot: active,
            image: active_sha256,
        });
        let halt = driver.settle()?;
        Ok((driver, halt))
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.record.state
    }

    /// The journaled record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The slot running.
    pub fn active(&self) -> Slot {
        self.active
    }

    /// Take the messages queued for the server: every event, in order, and the last report only.
    /// A report is a snapshot that the next one replaces (the topic is retained, the server keeps the
    /// newest), so the reports a settle queued before its last are never sent.
    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        let mut out = std::mem::take(&mut self.outbox);
        if let Some(last) = out.iter().rposition(|o| matches!(o, Outgoing::Report(_))) {
            let mut i = 0;
            out.retain(|o| {
                i += 1;
                i - 1 == last || !matches!(o, Outgoing::Report(_))
            });
        }
        out
    }

    /// Give the hardware back (a test "reboots" by dropping the driver and reusing the media).
    pub fn into_hardware(self) -> Hardware {
        self.hw
    }

    /// Feed the server's desired state and settle. A desired state the machine cannot take now (an
    /// install or trial is running) is kept and offered again once it settles.
    pub fn desired(&mut self, rollout: Option<String>, action: DesiredAction) -> Result<Halt, DriverError> {
        if self.rebooting {
            return Ok(Halt::Rebooting);
        }
        let running = self.running(&action)?;
        let event = Event::Desired {
            rollout: rollout.clone(),
            action: action.clone(),
            running,
        };
        match self.step(&event) {
            Err(DriverError::Fsm(refused)) => {
                tracing::info!(%refused, "desired state deferred until the agent settles");
                self.deferred = Some((rollout, action));
            }
            other => other?,
        }
        self.settle()
    }

    fn running(&mut self, action: &DesiredAction) -> Result<Running, DriverError> {
        let image = self
            .record
            .images
            .get(self.active)
            .filter(|i| Some(i.sha256) == self.active_sha256)
            .cloned();
        let other_slot = self.active.other();
        let other = match (action, self.record.images.get(other_slot).cloned()) {
            (DesiredAction::Switch { .. }, Some(img)) => {
                let dev = &mut self.hw.slots[hw_index(other_slot)];
                (Sha256(hash_prefix(dev, img.size)?) == img.sha256).then_some(img)
            }
            _ => None,
        };
        Ok(Running {
            slot: self.active,
            image,
            other,
        })
    }

    /// Run queued events and due timers until the machine waits or reboots.
    pub fn settle(&mut self) -> Result<Halt, DriverError> {
        loop {
            if self.rebooting {
                return Ok(Halt::Rebooting);
            }
            if let Some(event) = self.queue.pop_front() {
                self.step(&event)?;
                continue;
            }
            if let Some(event) = fsm::wakeup(&self.record.state, self.clock.now()) {
                self.step(&event)?;
                continue;
            }
            match self.deferred.take() {
                Some((rollout, action)) if self.record.state.is_settled() => {
                    self.desired(rollout, action)?;
                }
                deferred => {
                    self.deferred = deferred;
                    return Ok(Halt::Waiting);
                }
            }
        }
    }

    /// One transition: compute it, then perform its actions in order.
    fn step(&mut self, event: &Event) -> Result<(), DriverError> {
        let now = self.clock.now();
        let (state, actions) = fsm::next_with(&self.settings.policy, &self.record.state, event, now)?;
        tracing::debug!(
            from = self.record.state.name(),
            event = event.name(),
            to = state.name(),
            "transition"
        );
        for action in actions {
            if self.rebooting {
                break;
            }
            self.perform(action)?;
        }
        // Every state change journals first (the `Journal` action updates the record); a nested step
        // (download progress) may have moved the state further since, so nothing is overwritten here.
        debug_assert!(self.record.state == state || matches!(state, State::Downloading { .. }));
        Ok(())
    }
}

fn hw_index(slot: Slot) -> usize {
    hw_slot(slot).index()
}
