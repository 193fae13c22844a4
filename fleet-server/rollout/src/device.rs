//! What the server knows about each targeted device, and how the engine reads it.

use serde::{Deserialize, Serialize};

use crate::state::FailureKind;

/// The agent's state machine phase, as last reported (see docs/agent-fsm.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing in progress.
    Idle,
    /// Fetching the bundle (a download failure ends in `Failed`).
    Downloading,
    /// Writing the inactive slot.
    Installing,
    /// The inactive slot holds the release and is set to boot next.
    Staged,
    /// Rebooting into the new slot.
    Rebooting,
    /// Running the new slot, health checks in progress.
    Trial,
    /// The new slot is marked good.
    Committed,
    /// The device fell back to its previous slot.
    RolledBack,
    /// The update failed before switching slots (download or install error).
    Failed,
}

/// One device the rollout targets, as the server sees it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// Device id.
    pub id: String,
    /// Site name (matches [`crate::Site::name`]); `None` = no site, no window, no cap.
    pub site: Option<String>,
    /// Hardware class (the bundle's `product`).
    pub hw_class: String,
    /// Version in the active (booted) slot.
    pub active_version: Option<String>,
    /// Version in the other slot.
    pub other_version: Option<String>,
    /// The agent's phase.
    pub phase: Phase,
    /// The release the phase is about (e.g. the version that failed or is being installed).
    pub phase_version: Option<String>,
    /// The agent's reason (last error, rollback reason).
    pub reason: Option<String>,
    /// Health verdict of the running release, if the agent reported one.
    pub healthy: Option<bool>,
    /// Last report, unix seconds.
    pub last_seen: i64,
    /// Connected to the broker now (its presence; `false` once the broker published its last will).
    #[serde(default = "connected")]
    pub online: bool,
}

fn connected() -> bool {
    true
}

impl DeviceView {
    fn phase_is(&self, version: &str) -> bool {
        self.phase_version.as_deref() == Some(version)
    }

    /// Committed on `version` and not reported unhealthy.
    pub fn committed_healthy(&self, version: &str) -> bool {
        self.phase == Phase::Committed
            && self.active_version.as_deref() == Some(version)
            && self.healthy != Some(false)
    }

    /// Between download and commit of `version`.
    pub fn in_flight(&self, version: &str) -> bool {
        matches!(
            self.phase,
            Phase::Downloading | Phase::Installing | Phase::Staged | Phase::Rebooting | Phase::Trial
        ) && self.phase_is(version)
    }

    /// Downloading, installing, ..., trial, whatever the version (counts against a site's cap).
    pub fn busy(&self) -> bool {
        matches!(
            self.phase,
            Phase::Downloading | Phase::Installing | Phase::Staged | Phase::Rebooting | Phase::Trial
        )
    }

    /// The device may boot (or runs) `version`: its other slot no longer holds what it ran before.
    pub fn left_previous(&self, version: &str) -> bool {
        self.active_version.as_deref() == Some(version)
            || (matches!(
                self.phase,
                Phase::Staged | Phase::Rebooting | Phase::Trial | Phase::Committed
            ) && self.phase_is(version))
    }

    /// A failure of `version` this report shows (not counting silence).
    pub fn reported_failure(&self, version: &str) -> Option<(FailureKind, String)> {
        let why = |default: &str| self.reason.clone().unwrap_or_else(|| default.to_owned());
        let running = self.phase_is(version) || self.active_version.as_deref() == Some(version);
        match self.phase {
            Phase::Failed if self.phase_is(version) => {
                Some((FailureKind::InstallFailed, why("install failed")))
            }
            Phase::RolledBack if self.phase_is(version) => {
                Some((FailureKind::RolledBack, why("rolled back")))
            }
            Phase::Trial | Phase::Committed if running && self.healthy == Some(false) => {
                Some((FailureKind::Unhealthy, why("health check failed")))
            }
            _ => None,
        }
    }

    /// Seconds since the later of the last report and `since` (unix seconds), when above `limit`.
    pub fn silent_for(&self, now: i64, since: i64, limit: u64) -> Option<i64> {
        let quiet = now.saturating_sub(self.last_seen.max(since));
        (quiet > i64::try_from(limit).unwrap_or(i64::MAX)).then_some(quiet)
    }
}
