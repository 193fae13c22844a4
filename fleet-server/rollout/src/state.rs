//! The rollout's persistent state: the server stores it as JSON and hands it back on every call.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::windows::Window;

/// Where the rollout is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Assigning and watching waves.
    Running,
    /// No new installs until an operator resumes (in-flight devices carry on).
    Paused {
        /// Why (breach message or the operator).
        reason: String,
    },
    /// The last wave soaked. Terminal (only `rollback` is accepted).
    Completed,
    /// Revert/Cancel issued; waiting for every touched device to be back on its previous release.
    Reverting {
        /// Why.
        reason: String,
    },
    /// Every touched device is back. Terminal.
    Reverted {
        /// Why the revert started.
        reason: String,
    },
    /// Stopped by an operator; devices already past staging keep the release. Terminal
    /// (only `rollback` is accepted).
    Aborted {
        /// Why.
        reason: String,
    },
}

impl Status {
    /// Short name, as in messages and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused { .. } => "paused",
            Status::Completed => "completed",
            Status::Reverting { .. } => "reverting",
            Status::Reverted { .. } => "reverted",
            Status::Aborted { .. } => "aborted",
        }
    }
}

/// The whole rollout state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    /// Current status.
    pub status: Status,
    /// Waves have been planned (happens on the first `step`).
    pub planned: bool,
    /// Index (0-based) of the active wave in `waves`.
    pub wave_index: usize,
    /// One entry per policy wave.
    pub waves: Vec<WaveState>,
    /// Every device placed in a wave, by id.
    pub devices: BTreeMap<String, DeviceRecord>,
    /// Devices that already ran the release when first seen (not part of any wave).
    pub already_current: BTreeSet<String>,
    /// Hardware classes a `Quarantine` action was issued for.
    pub quarantined: BTreeSet<String>,
    /// Sites whose configuration error was reported (reported once, kept closed).
    pub site_errors: BTreeSet<String>,
}

impl Default for RolloutState {
    fn default() -> Self {
        Self::new()
    }
}

impl RolloutState {
    /// The state of a rollout that has not been stepped yet.
    pub fn new() -> Self {
        Self {
            status: Status::Running,
            planned: false,
            wave_index: 0,
            waves: Vec::new(),
            devices: BTreeMap::new(),
            already_current: BTreeSet::new(),
            quarantined: BTreeSet::new(),
            site_errors: BTreeSet::new(),
        }
    }

    /// Failed devices of wave `index`.
    pub fn failures_in(&self, index: usize) -> impl Iterator<Item = (&String, &DeviceRecord)> {
        self.devices
            .iter()
            .filter(move |(_, r)| r.wave_index == index && r.failure.is_some())
    }
}

/// One wave's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveState {
    /// Device ids in this wave (late joiners appended).
    pub devices: Vec<String>,
    /// When the wave became active.
    pub started_at: Option<Timestamp>,
    /// When the last of its devices committed (set once all are done).
    pub soak_started_at: Option<Timestamp>,
    /// When it soaked and the rollout moved on.
    pub completed_at: Option<Timestamp>,
    /// Failures forgiven by `resume` (added to the budget).
    pub forgiven: usize,
}

/// One device's part in the rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Index (0-based) of its wave.
    pub wave_index: usize,
    /// Hardware class when placed.
    pub hw_class: String,
    /// Enrolled after planning.
    pub joined_late: bool,
    /// Active version when the install was issued (the release a revert goes back to).
    pub from_version: Option<String>,
    /// When `Install` was issued.
    pub assigned_at: Option<Timestamp>,
    /// The window occurrence the install was issued for (`None` = no window).
    #[serde(default)]
    pub window: Option<Window>,
    /// When the engine first saw it committed and healthy.
    pub committed_at: Option<Timestamp>,
    /// First failure seen (sticky: it counts against the budget even if the device recovers).
    pub failure: Option<Failure>,
    /// The `Revert`/`Cancel` issued to it, if any.
    pub exit: Option<Exit>,
}

/// Why a device counts as failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Download or install error (`Failed`).
    InstallFailed,
    /// The device fell back to its old slot (`RolledBack`).
    RolledBack,
    /// Health checks failed in trial or after commit.
    Unhealthy,
    /// No report for longer than `silent_after_secs` while updating or soaking.
    Silent,
}

impl FailureKind {
    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::InstallFailed => "install failed",
            FailureKind::RolledBack => "rolled back",
            FailureKind::Unhealthy => "unhealthy",
            FailureKind::Silent => "silent",
        }
    }
}

/// A recorded failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Category.
    pub kind: FailureKind,
    /// When the engine saw it.
    pub at: Timestamp,
    /// The device's reason, or the engine's.
    pub reason: String,
}

/// What the engine told a device when the rollout stopped or reverted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "exit", rename_all = "snake_case")]
pub enum Exit {
    /// Switch back to the other slot, holding `to_version`.
    Revert {
        /// The previous release.
        to_version: String,
    },
    /// Stay on the current version.
    Cancel,
}
