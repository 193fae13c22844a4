//! Reading device reports into the state (commits, failures) and checking failure budgets.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::engine::Ctx;
use crate::output::DecisionKind;
use crate::policy::Breach;
use crate::state::{DeviceRecord, Failure, FailureKind, Status};

impl Ctx<'_> {
    /// Updates every assigned, not yet exited device from its report.
    pub(crate) fn observe(&mut self) {
        // Only devices still in play: waiting, exited and failed ones have nothing to observe.
        let ids: Vec<String> = (self.state.devices.iter())
            .filter(|(_, r)| r.assigned_at.is_some() && r.exit.is_none() && r.failure.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.observe_one(&id);
        }
    }

    fn observe_one(&mut self, id: &str) {
        let Some(view) = self.views.get(id).copied() else {
            return;
        };
        let Some(rec) = self.state.devices.get(id) else {
            return;
        };
        if rec.assigned_at.is_none() || rec.exit.is_some() || rec.failure.is_some() {
            return;
        }
        let version = self.spec.version.as_str();
        if missed_window(view, rec, version, self.now) {
            self.requeue(id);
            return;
        }
        let since_assigned = rec.assigned_at.map_or(i64::MIN, |t| t.as_second());
        let found = (view.reported_failure(version))
            .filter(|_| view.last_seen >= since_assigned)
            .or_else(|| self.silence(view, rec));
        let committed = rec.committed_at.is_none() && view.committed_healthy(version);
        let (index, hw) = (rec.wave_index, rec.hw_class.clone());
        let now = self.now;
        let Some(rec) = self.state.devices.get_mut(id) else {
            return;
        };
        if let Some((kind, reason)) = found {
            rec.failure = Some(Failure {
                kind,
                at: now,
                reason: reason.clone(),
            });
            let message = format!(
                "device {id} (hw={hw}) failed on wave {}: {}: {reason}",
                index + 1,
                kind.name()
            );
            self.decide(Some(index), DecisionKind::DeviceFailed, message);
        } else if committed {
            rec.committed_at = Some(now);
        }
    }

    /// The device never picked up its install before the window closed: it waits for the next
    /// open window (not a failure).
    fn requeue(&mut self, id: &str) {
        let Some(rec) = self.state.devices.get_mut(id) else {
            return;
        };
        let end = rec.window.map(|w| w.end.to_string()).unwrap_or_default();
        (rec.assigned_at, rec.window, rec.from_version) = (None, None, None);
        let index = rec.wave_index;
        let message =
            format!("device {id} did not start before its window closed at {end}; waits for the next one");
        self.decide(Some(index), DecisionKind::Requeued, message);
    }

    /// Silence counts while the device updates, and, once it committed, while its wave soaks and the
    /// device is offline: an idle agent has nothing to report, so a connected one is not silent.
    fn silence(&self, view: &crate::DeviceView, rec: &DeviceRecord) -> Option<(FailureKind, String)> {
        let soaking = rec.wave_index == self.state.wave_index
            && self
                .state
                .waves
                .get(rec.wave_index)
                .is_some_and(|w| w.completed_at.is_none());
        if rec.committed_at.is_some() && (!soaking || view.online) {
            return None;
        }
        let since = rec
            .committed_at
            .or(rec.assigned_at)
            .map_or(i64::MIN, |t| t.as_second());
        let limit = self.spec.policy.silent_after_secs;
        let quiet = view.silent_for(self.now.as_second(), since, limit)?;
        Some((
            FailureKind::Silent,
            format!("no report for {quiet}s (limit {limit}s)"),
        ))
    }

    /// Checks every started wave's budget; on the first breach applies the policy.
    pub(crate) fn check_breach(&mut self) -> bool {
        let last = self
            .state
            .wave_index
            .min(self.state.waves.len().saturating_sub(1));
        for index in 0..=last {
            if let Some(message) = self.breach_message(index) {
                self.on_breach(index, message);
                return true;
            }
        }
        false
    }

    fn breach_message(&self, index: usize) -> Option<String> {
        let wave = self.state.waves.get(index)?;
        let budget = self.spec.policy.waves.get(index)?.failure_budget;
        let size = wave.devices.len();
        let tolerated = budget.tolerated(size).saturating_add(wave.forgiven);
        let failures = self.state.failures_in(index).count();
        (failures > tolerated).then(|| {
            format!(
                "wave {} breached: {failures} of {size} failed (tolerated {tolerated}): {}",
                index + 1,
                self.failure_summary(Some(index))
            )
        })
    }

    /// "hw=pos-arm 3 (unhealthy 2, silent 1); hw=x86 1 (rolled back 1)" for one wave or all.
    pub(crate) fn failure_summary(&self, index: Option<usize>) -> String {
        let parts: Vec<String> = self
            .failures_by_class(index)
            .iter()
            .map(|(hw, kinds)| {
                let total: usize = kinds.values().sum();
                let detail: Vec<String> = kinds.iter().map(|(k, n)| format!("{} {n}", k.name())).collect();
                format!("hw={hw} {total} ({})", detail.join(", "))
            })
            .collect();
        parts.join("; ")
    }

    pub(crate) fn failures_by_class(
        &self,
        index: Option<usize>,
    ) -> BTreeMap<&str, BTreeMap<FailureKind, usize>> {
        let mut by: BTreeMap<&str, BTreeMap<FailureKind, usize>> = BTreeMap::new();
        let records = self
            .state
            .devices
            .values()
            .filter(|r| index.is_none_or(|i| r.wave_index == i));
        for r in records {
            if let Some(f) = &r.failure {
                *by.entry(r.hw_class.as_str())
                    .or_default()
                    .entry(f.kind)
                    .or_default() += 1;
            }
        }
        by
    }

    fn on_breach(&mut self, index: usize, message: String) {
        match self.spec.policy.on_breach {
            Breach::Pause => {
                self.decide(Some(index), DecisionKind::Breach, format!("{message}; pausing"));
                self.state.status = Status::Paused { reason: message };
                self.decide(
                    Some(index),
                    DecisionKind::Paused,
                    "paused by policy on breach".to_owned(),
                );
            }
            Breach::Revert => {
                self.decide(Some(index), DecisionKind::Breach, format!("{message}; reverting"));
                self.begin_revert(message);
            }
        }
    }
}

/// The install window ended and the device shows nothing of the release yet.
fn missed_window(view: &crate::DeviceView, rec: &DeviceRecord, version: &str, now: Timestamp) -> bool {
    let ended = rec.window.is_some_and(|w| now >= w.end);
    let untouched =
        view.phase_version.as_deref() != Some(version) && view.active_version.as_deref() != Some(version);
    ended && untouched && rec.committed_at.is_none()
}
