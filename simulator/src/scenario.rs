//! Scenario files (TOML): sites, device groups, releases and how they behave per hardware class,
//! rollouts run one after the other, and `expect` assertions checked at the end. The format is
//! documented in `simulator/README.md`; examples live in `simulator/scenarios/`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::device::Behavior;
pub use crate::faults::{FaultKind, FaultSpec, Span};

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `virtual` (days in seconds, deterministic per seed, every fault kind) or `real` (real sockets
    /// and the embedded broker, wall-clock time).
    #[serde(default)]
    pub clock: ClockMode,
    /// Real time: an external MQTT broker (e.g. `mqtt://127.0.0.1:1883` for Mosquitto) instead of the
    /// server's embedded one.
    pub broker: Option<String>,
    /// Virtual time's tunables.
    #[serde(default, rename = "virtual")]
    pub tunables: Tunables,
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

/// Which clock a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    Virtual,
    #[default]
    Real,
}

/// How devices and the server behave in virtual time (defaults in parentheses).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tunables {
    /// Virtual start, Unix seconds (2026-11-23T00:00:00Z, a Monday).
    pub start: i64,
    /// A reboot until the agent runs (45s).
    pub boot: Span,
    /// A hanging image until the watchdog resets the box (3m).
    pub hang: Span,
    /// Health checks must pass this long after an update (2m), checked every `health_interval` (30s).
    pub stability_window: Span,
    pub health_interval: Span,
    /// The server's engine runs this often when nothing wakes it (1m).
    pub engine_tick: Span,
    /// Message latency device ↔ server (1s).
    pub latency: Span,
    /// Devices per version are sampled this often for the chart (10m).
    pub sample: Span,
    /// The run stops at this virtual time even if rollouts are still going (10d).
    pub limit: Span,
    /// The agents' start-up grace: health checks may fail this long into a trial (0s).
    pub startup_grace: Span,
}

impl Default for Tunables {
    fn default() -> Self {
        Self {
            start: 1_795_392_000,
            boot: Span(45),
            hang: Span(180),
            stability_window: Span(120),
            health_interval: Span(30),
            engine_tick: Span(60),
            latency: Span(1),
            sample: Span(600),
            limit: Span(10 * 86_400),
            startup_grace: Span(0),
        }
    }
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
    /// Percent of the devices of a class on which this release's health checks fail anyway (a crash
    /// that only some boxes hit), seeded per device.
    #[serde(default)]
    pub crash_rate: BTreeMap<String, u8>,
    /// The signed bundle expires this long after the run's start (virtual time).
    pub expires_after: Option<Span>,
    /// Per class: after boot, the image's services need this long before its health checks pass
    /// (virtual time). The agent's `startup_grace` decides whether that is a rollback.
    #[serde(default)]
    pub slow_start: BTreeMap<String, Span>,
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
    /// Give up waiting for the rollout to end after this long (seconds of the run's clock).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Virtual time: start this long after the previous rollout ended (or after enrollment).
    #[serde(default)]
    pub start_after: Span,
}

fn default_timeout() -> u64 {
    600
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
            if let Some(p) = f.problem() {
                return Err(bad(format!("fault: {p}")));
            }
            if let Some(r) = &f.rollout
                && !self.rollouts.iter().any(|x| &x.id == r)
            {
                return Err(bad(format!("fault during unknown rollout {r:?}")));
            }
            if let Some(site) = &f.site
                && !self.sites.iter().any(|x| &x.name == site)
            {
                return Err(bad(format!("fault at unknown site {site:?}")));
            }
            if self.clock == ClockMode::Real && !f.kind.in_real_time() {
                return Err(bad(format!(
                    "fault {:?} needs `clock = \"virtual\"` (real time runs power cuts only)",
                    f.kind
                )));
            }
        }
        if self.clock == ClockMode::Real && self.releases.iter().any(|r| !r.slow_start.is_empty()) {
            return Err(bad("`slow_start` needs `clock = \"virtual\"`".to_owned()));
        }
        for e in &self.expect {
            crate::expect::Expect::parse(e).map_err(|err| bad(err.to_string()))?;
        }
        crate::virt::scenario::check(&self.tunables).map_err(bad)?;
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
                let named = r.behavior.get(hw).map(|b| Behavior::from(*b));
                let slow = r.slow_start.get(hw).map(|s| Behavior::SlowStart(s.0));
                match (named, slow) {
                    (None | Some(Behavior::Good), Some(slow)) => Some(slow),
                    (named, _) => named,
                }
                .map(|b| (r.version.clone(), b))
            })
            .collect()
    }
}
