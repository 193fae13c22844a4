//! The agent's pure state machine (design §4, style convention 3): [`State`] × [`Event`] → [`State`] +
//! [`Action`]s, with no I/O. The driver performs the actions; the transition table in
//! `docs/agent-fsm.md` is generated from [`table::markdown`] and checked against it by a test.
//!
//! - this module: the data ([`State`], [`Event`], [`Action`], [`Image`], [`Update`], [`Policy`]);
//! - [`transitions`]: [`next`] and [`wakeup`] (the timer events a state is waiting for);
//! - [`table`]: sample states and events, and the generated Markdown table.
//!
//! Rule: every transition that changes durable state returns [`Action::Journal`] with the new state as
//! its first action, so the driver persists before any side effect.

pub mod table;
pub mod transitions;

use halyard_protocol::{AgentState, Artifact, DesiredAction, Sha256, Slot, Window};
use serde::{Deserialize, Serialize};

pub use transitions::{next, next_with, wakeup};

/// An image in a slot: which release, how long, what it hashes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Release version (semver text as in the bundle manifest).
    pub version: String,
    /// Image length in bytes (the slot device is larger).
    pub size: u64,
    /// SHA-256 of the first `size` bytes of the slot.
    pub sha256: Sha256,
}

/// What the running system looks like when a desired state arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// The slot booted.
    pub slot: Slot,
    /// Its image, if the agent knows it.
    pub image: Option<Image>,
    /// The image in the other slot, if it is known and intact.
    pub other: Option<Image>,
}

/// The update in progress: where it comes from and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The rollout the instruction belongs to.
    pub rollout: Option<String>,
    /// The release version being installed.
    pub version: String,
    /// The slot being written (the inactive one).
    pub slot: Slot,
    /// When the device may reboot into it.
    pub window: Option<Window>,
    /// Unix seconds after which an unstaged update gives up.
    pub deadline: Option<u64>,
}

/// Full bundle or a delta against the active image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadChoice {
    /// The full bundle: always applicable.
    Full,
    /// A delta bundle whose source is the active slot's image.
    Delta,
}

/// An installed image waiting to be booted, tried, committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staging {
    /// The update.
    pub update: Update,
    /// The verified image now in `update.slot`.
    pub image: Image,
    /// The bundle's security version (committed when the trial passes).
    pub security_version: u64,
    /// Times the bootloader was armed for this image.
    pub attempts: u8,
}

/// The agent's state. Everything here is journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Nothing in progress.
    Idle,
    /// Fetching the bundle; `done` bytes are durable in the download file.
    Downloading {
        /// The update.
        update: Update,
        /// The artifact chosen (full or delta).
        artifact: Artifact,
        /// Which kind it is.
        choice: PayloadChoice,
        /// For a delta: the full bundle, fetched instead if the delta fails.
        fallback: Option<Artifact>,
        /// Durable bytes so far.
        done: u64,
    },
    /// Verifying the bundle and writing the inactive slot.
    Installing {
        /// The update.
        update: Update,
        /// The downloaded artifact.
        artifact: Artifact,
        /// Which kind it is.
        choice: PayloadChoice,
        /// For a delta: the full bundle, fetched instead if the delta fails.
        fallback: Option<Artifact>,
    },
    /// The image is verified in the inactive slot; waiting for the reboot window.
    Staged(Staging),
    /// The bootloader is being armed (`armed` false) or was armed and the reboot requested.
    Rebooting {
        /// The staged image.
        staging: Staging,
        /// Whether `set_next` is known to have completed.
        armed: bool,
    },
    /// Running the new image on probation: health checks until a verdict or `deadline`.
    Trial {
        /// The staged image, now booted.
        staging: Staging,
        /// Unix seconds after which the trial fails.
        deadline: u64,
        /// Boots of the new image during this trial.
        boots: u8,
    },
    /// The new image passed its trial and is marked good.
    Committed {
        /// The image's slot.
        slot: Slot,
        /// The committed image.
        image: Image,
        /// Its security version (the floor for later bundles).
        security_version: u64,
        /// The rollout that installed it.
        rollout: Option<String>,
    },
    /// The update was abandoned after it was booted (or armed); the old image runs.
    RolledBack {
        /// The release that failed.
        version: String,
        /// The slot holding it, which must not boot again (none for a switch that never armed).
        slot: Option<Slot>,
        /// The rollout.
        rollout: Option<String>,
        /// Why.
        reason: String,
    },
    /// The update failed before the device booted it.
    Failed {
        /// The release, if one was being installed.
        version: Option<String>,
        /// The rollout.
        rollout: Option<String>,
        /// Why.
        reason: String,
    },
}

/// Something that happened, fed to [`next`] by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "events are short-lived and passed by reference; boxing would only add allocations"
)]
pub enum Event {
    /// The server's desired state (new or re-delivered), with what the device is running.
    Desired {
        /// The rollout.
        rollout: Option<String>,
        /// The instruction.
        action: DesiredAction,
        /// The running system.
        running: Running,
    },
    /// More of the download is durable.
    DownloadProgress {
        /// Durable bytes.
        done: u64,
    },
    /// The whole artifact is downloaded and its SHA-256 matches.
    DownloadDone,
    /// The download failed for good (retries exhausted, wrong size or digest).
    DownloadFailed {
        /// Why.
        reason: String,
    },
    /// The bundle verified and its image is written and verified in the inactive slot.
    InstallDone {
        /// The image written.
        image: Image,
        /// The bundle's security version.
        security_version: u64,
    },
    /// Verification or writing failed.
    InstallFailed {
        /// Why.
        reason: String,
    },
    /// The reboot window is open.
    WindowOpen,
    /// `set_next` completed.
    NextSet,
    /// The system (re)started: the driver's first event after start-up.
    Booted {
        /// The slot running.
        slot: Slot,
        /// SHA-256 of the running image, when its size is known.
        image: Option<Sha256>,
    },
    /// The stability window passed with every check healthy.
    HealthPassed,
    /// A check failed during the trial.
    HealthFailed {
        /// Which check and why.
        reason: String,
    },
    /// The trial ran past its deadline without a verdict.
    TrialDeadline,
    /// The desired state's deadline passed before the image was staged.
    JobDeadline,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Persist this state (always first when the state changes durably).
    Journal(State),
    /// Fetch `artifact` into the download file from byte `from`.
    Download {
        /// What to fetch.
        artifact: Artifact,
        /// First byte still missing.
        from: u64,
    },
    /// Delete the download file.
    DiscardDownload,
    /// Verify the downloaded bundle and write its image into `slot`.
    Install {
        /// The target slot.
        slot: Slot,
        /// Full or delta.
        choice: PayloadChoice,
    },
    /// Tell the bootloader never to boot `slot`.
    MarkUnbootable(Slot),
    /// Tell the bootloader to try `slot` `tries` times.
    SetNext {
        /// The slot.
        slot: Slot,
        /// Try budget.
        tries: u8,
    },
    /// Restart the machine.
    Reboot,
    /// Tell the bootloader `slot` is good.
    MarkSuccessful(Slot),
    /// Run health checks for the stability window (petting the watchdog).
    StartHealthChecks,
    /// Stop them.
    StopHealthChecks,
    /// Publish a state transition on `events`.
    Emit {
        /// Previous state.
        from: AgentState,
        /// New state.
        to: AgentState,
        /// Why, for failures.
        reason: Option<String>,
    },
    /// Publish the full report.
    Report,
}

/// A transition the table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event} is not allowed in state {state}")]
pub struct InvalidTransition {
    /// The state's name.
    pub state: &'static str,
    /// The event's name.
    pub event: &'static str,
}

/// Tunables of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Boot tries given to a new slot (1..=9).
    pub boot_tries: u8,
    /// How long a trial may last before it fails, in seconds.
    pub trial_timeout: u64,
    /// How often the bootloader may be armed for one staged image.
    pub max_arm_attempts: u8,
    /// How often a trial image may be rebooted before the trial fails.
    pub max_trial_boots: u8,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            boot_tries: 3,
            trial_timeout: 600,
            max_arm_attempts: 3,
            max_trial_boots: 3,
        }
    }
}

impl State {
    /// The state's name (table rows, errors, logs).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Downloading { .. } => "Downloading",
            Self::Installing { .. } => "Installing",
            Self::Staged(_) => "Staged",
            Self::Rebooting { armed: false, .. } => "Rebooting(arming)",
            Self::Rebooting { armed: true, .. } => "Rebooting(armed)",
            Self::Trial { .. } => "Trial",
            Self::Committed { .. } => "Committed",
            Self::RolledBack { .. } => "RolledBack",
            Self::Failed { .. } => "Failed",
        }
    }

    /// The state as the wire protocol reports it.
    pub fn wire(&self) -> AgentState {
        match self {
            Self::Idle => AgentState::Idle,
            Self::Downloading {
                update,
                artifact,
                done,
                ..
            } => AgentState::Downloading {
                version: update.version.clone(),
                done: *done,
                total: artifact.size,
            },
            Self::Installing { update, .. } => AgentState::Installing {
                version: update.version.clone(),
            },
            Self::Staged(s) => AgentState::Staged {
                version: s.update.version.clone(),
            },
            Self::Rebooting { staging, .. } => AgentState::Rebooting {
                version: staging.update.version.clone(),
            },
            Self::Trial { staging, .. } => AgentState::Trial {
                version: staging.update.version.clone(),
            },
            Self::Committed { image, .. } => AgentState::Committed {
                version: image.version.clone(),
            },
            Self::RolledBack { version, reason, .. } => AgentState::RolledBack {
                version: version.clone(),
                reason: reason.clone(),
            },
            Self::Failed { version, reason, .. } => AgentState::Failed {
                version: version.clone(),
                reason: reason.clone(),
            },
        }
    }

    /// Whether no update is in progress (a new desired state may start one).
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            Self::Idle | Self::Committed { .. } | Self::RolledBack { .. } | Self::Failed { .. }
        )
    }
}

impl Event {
    /// The event's name (table columns, errors, logs).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Desired { action, .. } => match action {
                DesiredAction::Stay => "Desired(stay)",
                DesiredAction::Install { .. } => "Desired(install)",
                DesiredAction::Switch { .. } => "Desired(switch)",
            },
            Self::DownloadProgress { .. } => "DownloadProgress",
            Self::DownloadDone => "DownloadDone",
            Self::DownloadFailed { .. } => "DownloadFailed",
            Self::InstallDone { .. } => "InstallDone",
            Self::InstallFailed { .. } => "InstallFailed",
            Self::WindowOpen => "WindowOpen",
            Self::NextSet => "NextSet",
            Self::Booted { .. } => "Booted",
            Self::HealthPassed => "HealthPassed",
            Self::HealthFailed { .. } => "HealthFailed",
            Self::TrialDeadline => "TrialDeadline",
            Self::JobDeadline => "JobDeadline",
        }
    }
}

impl Action {
    /// The action's short name for the generated table.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Journal(_) => "journal",
            Self::Download { .. } => "download",
            Self::DiscardDownload => "discard_download",
            Self::Install { .. } => "install",
            Self::MarkUnbootable(_) => "mark_unbootable",
            Self::SetNext { .. } => "set_next",
            Self::Reboot => "reboot",
            Self::MarkSuccessful(_) => "mark_successful",
            Self::StartHealthChecks => "start_health",
            Self::StopHealthChecks => "stop_health",
            Self::Emit { .. } => "emit",
            Self::Report => "report",
        }
    }
}
