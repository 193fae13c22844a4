//! Scenario files (TOML): sites, device groups, releases and how they behave per hardware class,
//! rollouts run one after the other, and `expect` assertions checked at the end. The format is
//! documented in `simulator/README.md`; examples live in `simulator/scenarios/`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::device::Behavior;

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Size of every release image, KiB.
    #[serde(default = "default_image_kib")]
    pub image_kib: usize,
    /// The release every device ships with.
    #[serde(default = "default_factory")]
    pub factory: String,
    #[serde(default, rename = "site")]
    pub sites: Vec<SiteSpec>,
    #[serde(default)]
    pub devices: Vec<DeviceGroup>,
    #[serde(default, rename = "release")]
    pub releases: Vec<ReleaseSpec>,
    #[serde(default, rename = "rollout")]
    pub rollouts: Vec<RolloutSpec>,
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
    /// Assertions such as `rollout("r2").state == "reverted"`, `all_on("2.0.0")`,
    /// `max_devices_on("3.0.0") <= 2%`, `bricked == 0`, `quarantined("3.0.0") == "pos-arm"`.
    #[serde(default)]
    pub expect: Vec<String>,
}

fn default_seed() -> u64 {
    1
}
fn default_image_kib() -> usize {
    64
}
fn default_factory() -> String {
    "1.0.0".into()
}

/// A site and its maintenance windows, as the server's API takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    pub name: String,
    pub tz: String,
    #[serde(default)]
    pub windows: Vec<halyard_server::model::WindowSpec>,
    pub max_concurrent: Option<u32>,
}

/// `count` devices of one hardware class at one site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceGroup {
    pub site: String,
    pub hw: String,
    pub count: usize,
}

/// A release and how it behaves per hardware class (absent classes: `good`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    pub version: String,
    #[serde(default = "one")]
    pub security_version: u64,
    #[serde(default)]
    pub behavior: BTreeMap<String, BehaviorName>,
}

fn one() -> u64 {
    1
}

/// How a release behaves on a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BehaviorName {
    Good,
    Unhealthy,
    NoBoot,
}

impl From<BehaviorName> for Behavior {
    fn from(b: BehaviorName) -> Self {
        match b {
            BehaviorName::Good => Behavior::Good,
            BehaviorName::Unhealthy => Behavior::Unhealthy,
            BehaviorName::NoBoot => Behavior::NoBoot,
        }
    }
}

/// A rollout, created once the previous one has ended.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    pub id: String,
    pub version: String,
    #[serde(default)]
    pub selector: String,
    pub policy: halyard_rollout::Policy,
    /// Give up waiting for the rollout to end after this long.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    600
}

/// A fault injected while a rollout runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// The rollout during which it strikes.
    pub rollout: String,
    /// Share of the devices hit (seeded choice), percent.
    pub share: u8,
}

/// Kinds of faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Power cut once while the device is updating (downloading, installing, staged, rebooting or in
    /// trial): every write stops at that instant; the device boots again.
    PowerCut,
}

/// The scenario file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("scenario {name}: {reason}")]
    Invalid { name: String, reason: String },
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let read = |reason: String| ScenarioError::Read {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        let s: Self = toml::from_str(&text).map_err(|e| read(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |reason: String| ScenarioError::Invalid {
            name: self.name.clone(),
            reason,
        };
        for g in &self.devices {
            if !self.sites.iter().any(|s| s.name == g.site) {
                return Err(bad(format!("devices at unknown site {:?}", g.site)));
            }
        }
        for r in &self.rollouts {
            if !self.releases.iter().any(|x| x.version == r.version) {
                return Err(bad(format!("rollout {} of unknown release {}", r.id, r.version)));
            }
            r.policy
                .validate()
                .map_err(|e| bad(format!("rollout {}: {e}", r.id)))?;
        }
        for f in &self.faults {
            if !self.rollouts.iter().any(|r| r.id == f.rollout) || f.share > 100 {
                return Err(bad(format!(
                    "fault during unknown rollout {:?} or share above 100",
                    f.rollout
                )));
            }
        }
        for e in &self.expect {
            crate::expect::Expect::parse(e).map_err(|err| bad(err.to_string()))?;
        }
        Ok(())
    }

    pub fn device_count(&self) -> usize {
        self.devices.iter().map(|g| g.count).sum()
    }

    /// Behaviours of every release on hardware class `hw`.
    pub fn behaviors_for(&self, hw: &str) -> Vec<(String, Behavior)> {
        self.releases
            .iter()
            .filter_map(|r| {
                r.behavior
                    .get(hw)
                    .map(|b| (r.version.clone(), Behavior::from(*b)))
            })
            .collect()
    }
}
