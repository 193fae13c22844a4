//! `step`: the tick. Plans, observes devices, checks budgets, advances waves, assigns installs.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::device::DeviceView;
use crate::output::{Action, Decision, DecisionKind, Step};
use crate::policy::RolloutSpec;
use crate::state::{RolloutState, Status};
use crate::windows::Site;

/// Working memory of one call: inputs indexed, the state being changed, what came out.
pub(crate) struct Ctx<'a> {
    pub spec: &'a RolloutSpec,
    pub now: Timestamp,
    pub views: BTreeMap<&'a str, &'a DeviceView>,
    pub sites: BTreeMap<&'a str, &'a Site>,
    pub state: RolloutState,
    pub actions: Vec<Action>,
    pub decisions: Vec<Decision>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        spec: &'a RolloutSpec,
        state: &RolloutState,
        devices: &[&'a DeviceView],
        sites: &'a [Site],
        now: Timestamp,
    ) -> Self {
        Self {
            spec,
            now,
            views: devices.iter().map(|d| (d.id.as_str(), *d)).collect(),
            sites: sites.iter().map(|s| (s.name.as_str(), s)).collect(),
            state: state.clone(),
            actions: Vec::new(),
            decisions: Vec::new(),
        }
    }

    /// Records a decision about wave `index` (0-based), or about the whole rollout.
    pub fn decide(&mut self, index: Option<usize>, kind: DecisionKind, message: String) {
        self.decisions.push(Decision {
            at: self.now,
            wave: index.map(|i| i + 1),
            kind,
            message,
        });
    }

    pub fn finish(self) -> Step {
        Step {
            state: self.state,
            actions: self.actions,
            decisions: self.decisions,
        }
    }

    fn run(&mut self, devices: &[&'a DeviceView]) {
        self.plan_or_join(devices);
        if self.state.status != Status::Running {
            return;
        }
        self.observe();
        if self.check_breach() {
            return;
        }
        self.advance();
        if self.state.status == Status::Running {
            self.assign();
        }
    }

    /// Moves through every wave that is done and soaked; completes after the last one.
    fn advance(&mut self) {
        loop {
            let index = self.state.wave_index;
            let Some(wave) = self.state.waves.get_mut(index) else {
                return;
            };
            if wave.started_at.is_none() {
                wave.started_at = Some(self.now);
                let message = format!("wave {} started: {} devices", index + 1, wave.devices.len());
                self.decide(Some(index), DecisionKind::WaveStarted, message);
            }
            if !self.wave_soaked(index) {
                return;
            }
            self.finish_wave(index);
            if self.state.status != Status::Running {
                return;
            }
        }
    }

    fn finish_wave(&mut self, index: usize) {
        let total = self.state.waves.len();
        let (done, failed) = self.wave_counts(index);
        if let Some(wave) = self.state.waves.get_mut(index) {
            wave.completed_at = Some(self.now);
        }
        let soak = self.spec.policy.waves.get(index).map_or(0, |w| w.soak_secs);
        let message = format!(
            "wave {} soaked {soak}s: {done} committed and healthy, {failed} failed within budget",
            index + 1
        );
        self.decide(Some(index), DecisionKind::WaveSoaked, message);
        if index + 1 >= total {
            self.state.status = Status::Completed;
            let message = format!("rollout {} of {} completed", self.spec.id, self.spec.version);
            self.decide(None, DecisionKind::Completed, message);
        } else {
            self.state.wave_index = index + 1;
        }
    }

    /// (committed and healthy, failed) devices of a wave.
    fn wave_counts(&self, index: usize) -> (usize, usize) {
        let records = self.state.devices.values().filter(|r| r.wave_index == index);
        records.fold((0, 0), |(ok, bad), r| {
            (
                ok + usize::from(r.committed_at.is_some() && r.failure.is_none()),
                bad + usize::from(r.failure.is_some()),
            )
        })
    }

    /// Every present device of the wave is committed and healthy (or failed within budget),
    /// and the soak time has passed since the last commit. Records `soak_started_at`.
    fn wave_soaked(&mut self, index: usize) -> bool {
        let Some(wave) = self.state.waves.get(index) else {
            return true;
        };
        let mut last_commit: Option<Timestamp> = None;
        for id in &wave.devices {
            let Some(rec) = self.state.devices.get(id) else {
                continue;
            };
            if !self.views.contains_key(id.as_str()) || rec.failure.is_some() {
                continue;
            }
            match rec.committed_at {
                Some(at) => last_commit = last_commit.max(Some(at)),
                None => return false,
            }
        }
        let Some(last) = last_commit else { return true };
        if let Some(wave) = self.state.waves.get_mut(index) {
            wave.soak_started_at = Some(last);
        }
        let soak = self.spec.policy.waves.get(index).map_or(0, |w| w.soak_secs);
        let soak = i64::try_from(soak).unwrap_or(i64::MAX);
        self.now.as_second() >= last.as_second().saturating_add(soak)
    }
}

/// One tick of the rollout: call it periodically and after every device report.
///
/// `devices` are exactly the devices the rollout targets (new ones join the rollout), in any order,
/// as views or references to views; `sites` every site they refer to, `now` the current instant.
/// Pure: same inputs, same output; calling again with the returned state and the same inputs
/// returns no new actions or decisions.
pub fn step<V: Borrow<DeviceView>>(
    spec: &RolloutSpec,
    state: &RolloutState,
    devices: &[V],
    sites: &[Site],
    now: Timestamp,
) -> Step {
    let devices: Vec<&DeviceView> = devices.iter().map(Borrow::borrow).collect();
    let mut cx = Ctx::new(spec, state, &devices, sites, now);
    match cx.state.status {
        Status::Running => cx.run(&devices),
        Status::Paused { .. } => {
            cx.plan_or_join(&devices);
            cx.observe();
        }
        Status::Reverting { .. } => cx.check_reverted(),
        Status::Completed | Status::Reverted { .. } | Status::Aborted { .. } => {}
    }
    cx.finish()
}
