//! What a call returns: the new state, actions for the server, decisions for the audit log.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::state::RolloutState;
use crate::windows::Window;

/// The result of [`crate::step`] or [`crate::command()`]. Persist `state`, apply `actions` and
/// record `decisions` in one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The state to store (pass it to the next call).
    pub state: RolloutState,
    /// New actions (each is issued exactly once over the rollout's life).
    pub actions: Vec<Action>,
    /// What the engine decided and why.
    pub decisions: Vec<Decision>,
}

/// Something the server must do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Set the device's desired release to `version`, to install within `window` (`None` = now).
    Install {
        /// Device id.
        device: String,
        /// The release.
        version: String,
        /// The open maintenance window occurrence (UTC) to install in.
        window: Option<Window>,
    },
    /// Set the desired release back to `to_version`: the device's other slot still holds it, so it
    /// switches slots without a download.
    Revert {
        /// Device id.
        device: String,
        /// The release it ran before this rollout.
        to_version: String,
    },
    /// The device has not switched slots yet: stop the update, stay on the current version.
    Cancel {
        /// Device id.
        device: String,
    },
    /// Mark `version` as quarantined for `hw_class` (the server refuses new rollouts of it there).
    Quarantine {
        /// The release.
        version: String,
        /// The hardware class it failed on.
        hw_class: String,
        /// The failures behind it.
        reason: String,
    },
}

/// Category of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Waves were planned.
    Planned,
    /// A device enrolled after planning joined a wave.
    Joined,
    /// A wave became active.
    WaveStarted,
    /// A wave soaked and the rollout moved on.
    WaveSoaked,
    /// A device counted as failed.
    DeviceFailed,
    /// A device did not start before its window closed; it waits for the next one.
    Requeued,
    /// A failure budget was exceeded.
    Breach,
    /// Paused (breach policy or operator).
    Paused,
    /// Resumed by an operator.
    Resumed,
    /// Revert started (breach policy or operator).
    Reverting,
    /// Every touched device is back.
    Reverted,
    /// A release was quarantined for a hardware class.
    Quarantined,
    /// Aborted by an operator, or refused (invalid policy).
    Aborted,
    /// The last wave soaked.
    Completed,
    /// A site could not be evaluated (kept closed).
    SiteError,
}

/// One decision and its human reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// When it was taken (the `now` passed in).
    pub at: Timestamp,
    /// Wave number (1-based, as shown to people), when about a wave.
    pub wave: Option<usize>,
    /// Category.
    pub kind: DecisionKind,
    /// Why, e.g. "wave 1 breached: 3 of 40 failed (budget 1): hw=pos-arm 3 (unhealthy 3)".
    pub message: String,
}
