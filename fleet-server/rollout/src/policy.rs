//! What the operator asked for: the release, the seed and the wave policy.

use serde::{Deserialize, Serialize};

/// One rollout: a release version pushed to a set of devices under a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// Rollout id (for messages only; the engine never interprets it).
    pub id: String,
    /// The release (semver) devices are moved to.
    pub version: String,
    /// Seed for the deterministic canary and wave choice.
    pub seed: u64,
    /// How the rollout proceeds.
    pub policy: Policy,
}

/// The rollout policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Waves in order; wave 1 is the canary wave. The last wave takes every device left.
    pub waves: Vec<WaveSpec>,
    /// What to do when a wave's failure budget is exceeded.
    pub on_breach: Breach,
    /// An updating (or soaking) device that has not reported for this long counts as failed.
    pub silent_after_secs: u64,
    /// Issue installs only while the device's site maintenance window is open.
    pub respect_windows: bool,
}

/// One wave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveSpec {
    /// How many eligible devices this wave adds (not cumulative).
    pub size: WaveSize,
    /// How long every device of the wave must stay committed and healthy, counted from the last commit.
    pub soak_secs: u64,
    /// Failures tolerated in this wave; one more is a breach.
    pub failure_budget: Budget,
}

/// Size of a wave, relative to the eligible devices at planning time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveSize {
    /// Percent (1..=100) of the eligible devices, rounded up, at least one device.
    Percent(u8),
    /// A fixed number of devices (at least one).
    Count(u32),
}

/// Failures a wave tolerates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// This many failed devices are tolerated.
    Count(u32),
    /// This percent (0..=100) of the wave's devices, rounded down, is tolerated.
    Percent(u8),
}

/// Reaction to a breached failure budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breach {
    /// Stop issuing installs and wait for an operator (`resume`, `abort` or `rollback`).
    Pause,
    /// Switch every touched device back to its previous release and quarantine the release.
    Revert,
}

/// A policy the engine refuses to run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No waves at all.
    #[error("rollout policy has no waves")]
    NoWaves,
    /// A percent outside its range.
    #[error("wave {wave}: {what} percent {value} is outside {min}..=100")]
    Percent {
        /// Wave number (1-based).
        wave: usize,
        /// "size" or "failure budget".
        what: &'static str,
        /// The offending value.
        value: u8,
        /// Smallest accepted value.
        min: u8,
    },
    /// A wave of zero devices.
    #[error("wave {wave}: size count must be at least 1")]
    EmptyWave {
        /// Wave number (1-based).
        wave: usize,
    },
    /// `silent_after_secs` of zero would fail every device at once.
    #[error("silent_after_secs must be greater than 0")]
    SilentZero,
}

impl Policy {
    /// Checks the policy; the server should call this when a rollout is created.
    /// [`crate::step`] aborts a rollout whose policy does not validate.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.waves.is_empty() {
            return Err(PolicyError::NoWaves);
        }
        if self.silent_after_secs == 0 {
            return Err(PolicyError::SilentZero);
        }
        self.waves
            .iter()
            .enumerate()
            .try_for_each(|(i, w)| w.validate(i + 1))
    }
}

impl WaveSpec {
    fn validate(&self, wave: usize) -> Result<(), PolicyError> {
        match self.size {
            WaveSize::Percent(p) if !(1..=100).contains(&p) => {
                return Err(PolicyError::Percent {
                    wave,
                    what: "size",
                    value: p,
                    min: 1,
                });
            }
            WaveSize::Count(0) => return Err(PolicyError::EmptyWave { wave }),
            _ => {}
        }
        match self.failure_budget {
            Budget::Percent(p) if p > 100 => Err(PolicyError::Percent {
                wave,
                what: "failure budget",
                value: p,
                min: 0,
            }),
            _ => Ok(()),
        }
    }
}

impl WaveSize {
    /// Devices this wave asks for out of `eligible` (before clamping to what is left).
    pub fn devices(self, eligible: usize) -> usize {
        match self {
            WaveSize::Percent(p) => (eligible * usize::from(p.min(100))).div_ceil(100).max(1),
            WaveSize::Count(c) => usize::try_from(c).unwrap_or(usize::MAX).max(1),
        }
    }
}

impl Budget {
    /// Failures tolerated in a wave of `wave_devices` devices.
    pub fn tolerated(self, wave_devices: usize) -> usize {
        match self {
            Budget::Count(c) => usize::try_from(c).unwrap_or(usize::MAX),
            Budget::Percent(p) => wave_devices * usize::from(p.min(100)) / 100,
        }
    }
}
