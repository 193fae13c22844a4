//! Planning the waves on the first step, and placing devices that enroll later.

use std::collections::{BTreeMap, BTreeSet};

use crate::canary::{Candidate, plan_waves};
use crate::device::DeviceView;
use crate::engine::Ctx;
use crate::output::DecisionKind;
use crate::state::{DeviceRecord, Status, WaveState};

impl<'a> Ctx<'a> {
    pub(crate) fn plan_or_join(&mut self, devices: &[&'a DeviceView]) {
        if self.state.planned {
            self.join(devices);
        } else {
            self.plan(devices);
        }
    }

    fn plan(&mut self, devices: &[&'a DeviceView]) {
        self.state.planned = true;
        if let Err(e) = self.spec.policy.validate() {
            let reason = format!("invalid policy: {e}");
            self.state.status = Status::Aborted {
                reason: reason.clone(),
            };
            self.decide(None, DecisionKind::Aborted, reason);
            return;
        }
        let version = self.spec.version.as_str();
        let mut candidates = Vec::new();
        let mut seen = BTreeSet::new();
        for d in devices.iter().filter(|d| seen.insert(d.id.as_str())) {
            if d.active_version.as_deref() == Some(version) {
                self.state.already_current.insert(d.id.clone());
            } else {
                let site = d.site.as_deref().unwrap_or("");
                candidates.push(Candidate {
                    id: &d.id,
                    site,
                    hw_class: &d.hw_class,
                });
            }
        }
        let plan = plan_waves(self.spec.seed, &self.spec.policy, &candidates);
        for (index, ids) in plan.into_iter().enumerate() {
            for id in &ids {
                if let Some(d) = self.views.get(id.as_str()) {
                    self.state.devices.insert(id.clone(), record(index, d, false));
                }
            }
            self.state.waves.push(WaveState {
                devices: ids,
                ..WaveState::default()
            });
        }
        let message = self.plan_message();
        self.decide(None, DecisionKind::Planned, message);
    }

    fn plan_message(&self) -> String {
        let sizes: Vec<String> = self
            .state
            .waves
            .iter()
            .map(|w| w.devices.len().to_string())
            .collect();
        let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
        let first = self
            .state
            .waves
            .first()
            .map(|w| w.devices.as_slice())
            .unwrap_or_default();
        for id in first {
            if let Some(r) = self.state.devices.get(id) {
                *classes.entry(r.hw_class.as_str()).or_default() += 1;
            }
        }
        let canaries: Vec<String> = classes.iter().map(|(c, n)| format!("{c}={n}")).collect();
        format!(
            "planned {} of {} (seed {}): waves of [{}] devices, {} already current; canaries by hw: {}",
            self.spec.version,
            self.spec.id,
            self.spec.seed,
            sizes.join(", "),
            self.state.already_current.len(),
            canaries.join(", ")
        )
    }

    /// Devices not seen before join the last wave, or the active wave when their hardware
    /// class is new to the rollout (so an untested class is exposed as early as possible). They
    /// join in the order of their ids, whatever the order they were handed in.
    fn join(&mut self, devices: &[&'a DeviceView]) {
        if self.state.waves.is_empty() {
            return;
        }
        let mut new: Vec<&DeviceView> = Vec::new();
        for d in devices {
            let id = d.id.as_str();
            if self.state.devices.contains_key(id) || self.state.already_current.contains(id) {
                continue;
            }
            if d.active_version.as_deref() == Some(self.spec.version.as_str()) {
                self.state.already_current.insert(d.id.clone());
                continue;
            }
            new.push(d);
        }
        new.sort_by(|a, b| a.id.cmp(&b.id));
        new.dedup_by(|a, b| a.id == b.id);
        for d in new {
            self.join_one(d);
        }
    }

    fn join_one(&mut self, d: &DeviceView) {
        let known = self.state.devices.values().any(|r| r.hw_class == d.hw_class);
        let last = self.state.waves.len() - 1;
        let index = if known { last } else { self.state.wave_index };
        self.state.devices.insert(d.id.clone(), record(index, d, true));
        if let Some(w) = self.state.waves.get_mut(index) {
            w.devices.push(d.id.clone());
        }
        let why = if known {
            "last wave"
        } else {
            "active wave, new hardware class"
        };
        let message = format!(
            "device {} (hw={}) enrolled mid-rollout, joins wave {} ({why})",
            d.id,
            d.hw_class,
            index + 1
        );
        self.decide(Some(index), DecisionKind::Joined, message);
    }
}

fn record(wave_index: usize, d: &DeviceView, joined_late: bool) -> DeviceRecord {
    DeviceRecord {
        wave_index,
        hw_class: d.hw_class.clone(),
        joined_late,
        from_version: None,
        assigned_at: None,
        window: None,
        committed_at: None,
        failure: None,
        exit: None,
    }
}
