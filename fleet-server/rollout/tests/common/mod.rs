//! A tiny fleet for the rollout tests: devices that react to actions, and a virtual clock.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use halyard_rollout::*;
use jiff::Timestamp;

/// How a device of a class behaves when told to install.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behave {
    Good,
    Unhealthy,
    InstallFails,
    RollsBack,
    Silent,
    /// Stays in `Staged` (installed, not rebooted).
    StuckStaged,
}

pub const OLD: &str = "1.0.0";
pub const NEW: &str = "1.1.0";

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn wave(size: WaveSize, soak_secs: u64, budget: Budget) -> WaveSpec {
    WaveSpec {
        size,
        soak_secs,
        failure_budget: budget,
    }
}

pub fn spec(waves: Vec<WaveSpec>, on_breach: Breach) -> RolloutSpec {
    RolloutSpec {
        id: "r1".into(),
        version: NEW.into(),
        seed: 7,
        policy: Policy {
            waves,
            on_breach,
            silent_after_secs: 600,
            respect_windows: true,
        },
    }
}

pub fn three_waves(on_breach: Breach) -> RolloutSpec {
    spec(
        vec![
            wave(WaveSize::Percent(10), 3600, Budget::Count(0)),
            wave(WaveSize::Percent(30), 3600, Budget::Percent(10)),
            wave(WaveSize::Percent(100), 1800, Budget::Percent(10)),
        ],
        on_breach,
    )
}

pub fn device(id: &str, site: &str, hw: &str, now: Timestamp) -> DeviceView {
    DeviceView {
        id: id.into(),
        site: (!site.is_empty()).then(|| site.to_owned()),
        hw_class: hw.into(),
        active_version: Some(OLD.into()),
        other_version: None,
        phase: Phase::Idle,
        phase_version: None,
        reason: None,
        healthy: None,
        last_seen: now.as_second(),
        online: true,
    }
}

pub fn site(name: &str, tz: &str) -> Site {
    Site {
        name: name.into(),
        tz: tz.into(),
        windows: vec![],
        max_concurrent: None,
    }
}

/// `n` devices per (site, hw class).
pub fn devices(sites: &[&str], classes: &[&str], n: usize, now: Timestamp) -> Vec<DeviceView> {
    let mut out = Vec::new();
    for s in sites {
        for c in classes {
            for i in 0..n {
                out.push(device(&format!("{s}-{c}-{i}"), s, c, now));
            }
        }
    }
    out
}

pub struct Fleet {
    pub spec: RolloutSpec,
    pub state: RolloutState,
    pub devices: Vec<DeviceView>,
    pub sites: Vec<Site>,
    pub now: Timestamp,
    pub decisions: Vec<Decision>,
    pub actions: Vec<Action>,
    pub behave: fn(&DeviceView) -> Behave,
    /// Per hardware class behaviour; overrides `behave` for the classes it names.
    pub class_behave: BTreeMap<String, Behave>,
}

impl Fleet {
    pub fn new(spec: RolloutSpec, devices: Vec<DeviceView>, sites: Vec<Site>, now: Timestamp) -> Self {
        Self {
            spec,
            state: RolloutState::new(),
            devices,
            sites,
            now,
            decisions: vec![],
            actions: vec![],
            behave: |_| Behave::Good,
            class_behave: BTreeMap::new(),
        }
    }

    /// One engine step; returns its actions (also kept in `self.actions`).
    pub fn step(&mut self) -> Vec<Action> {
        let out = step(&self.spec, &self.state, &self.devices, &self.sites, self.now);
        self.absorb(out)
    }

    pub fn command(&mut self, cmd: Command) -> Result<Vec<Action>, CommandError> {
        let out = command(
            &self.spec,
            &self.state,
            cmd,
            "alice",
            &self.devices,
            &self.sites,
            self.now,
        )?;
        Ok(self.absorb(out))
    }

    fn absorb(&mut self, out: Step) -> Vec<Action> {
        // The server stores JSON: make every test go through it.
        let json = serde_json::to_string(&out.state).unwrap();
        self.state = serde_json::from_str(&json).unwrap();
        assert_eq!(self.state, out.state);
        self.decisions.extend(out.decisions);
        self.actions.extend(out.actions.clone());
        out.actions
    }

    pub fn dev(&mut self, id: &str) -> &mut DeviceView {
        self.devices.iter_mut().find(|d| d.id == id).unwrap()
    }

    pub fn get(&self, id: &str) -> &DeviceView {
        self.devices.iter().find(|d| d.id == id).unwrap()
    }

    /// Moves the clock; every device that is not silent reports (last_seen = now).
    pub fn tick(&mut self, secs: i64) {
        self.now = Timestamp::from_second(self.now.as_second() + secs).unwrap();
        let now = self.now.as_second();
        let behave: Vec<Behave> = self.devices.iter().map(|d| self.behave_of(d)).collect();
        for (d, b) in self.devices.iter_mut().zip(behave) {
            let silent = b == Behave::Silent && d.phase_version.as_deref() == Some(NEW);
            if !silent {
                d.last_seen = now;
            }
        }
    }

    /// The devices react to actions: installs finish at once according to `behave`.
    pub fn apply(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Install { device, version, .. } => {
                    let b = self.behave_of(self.get(device));
                    react(self.dev(device), version, b);
                }
                Action::Revert { device, to_version } => {
                    let d = self.dev(device);
                    d.other_version = d.active_version.take();
                    d.active_version = Some(to_version.clone());
                    (d.phase, d.phase_version, d.healthy) = (Phase::Idle, None, None);
                }
                Action::Cancel { device } => {
                    let d = self.dev(device);
                    (d.phase, d.phase_version) = (Phase::Idle, None);
                }
                Action::Quarantine { .. } => {}
            }
        }
    }

    /// Tick, step, apply, until paused, terminal, or `max` ticks.
    pub fn run(&mut self, tick_secs: i64, max: usize) {
        for _ in 0..max {
            self.tick(tick_secs);
            let actions = self.step();
            self.apply(&actions);
            if !matches!(self.state.status, Status::Running | Status::Reverting { .. }) {
                return;
            }
        }
    }

    pub fn behave_of(&self, d: &DeviceView) -> Behave {
        self.class_behave
            .get(&d.hw_class)
            .copied()
            .unwrap_or_else(|| (self.behave)(d))
    }

    /// Every device told to install so far.
    pub fn installs(&self) -> Vec<String> {
        installed(&self.actions)
    }

    pub fn wave_of(&self, id: &str) -> usize {
        self.state.devices[id].wave_index
    }
}

/// The devices `actions` tell to install, in order.
pub fn installed(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Install { device, .. } => Some(device.clone()),
            _ => None,
        })
        .collect()
}

pub fn react(d: &mut DeviceView, version: &str, b: Behave) {
    d.phase_version = Some(version.to_owned());
    match b {
        Behave::Good | Behave::Unhealthy => {
            d.other_version = d.active_version.take();
            d.active_version = Some(version.to_owned());
            d.phase = Phase::Committed;
            d.healthy = Some(b == Behave::Good);
        }
        Behave::InstallFails => (d.phase, d.reason) = (Phase::Failed, Some("write error".into())),
        Behave::RollsBack => {
            d.other_version = Some(version.to_owned());
            (d.phase, d.reason) = (Phase::RolledBack, Some("boot failed".into()));
        }
        Behave::Silent => d.phase = Phase::Downloading,
        Behave::StuckStaged => {
            d.other_version = Some(version.to_owned());
            d.phase = Phase::Staged;
        }
    }
}
