//! Reverting (breach or operator) and aborting: who gets `Revert`, who gets `Cancel`.

use crate::engine::Ctx;
use crate::output::{Action, DecisionKind};
use crate::state::{DeviceRecord, Exit, Status};

impl Ctx<'_> {
    /// Issues Revert/Cancel to every touched device, quarantines the release for the hardware
    /// classes that failed, and moves to `Reverting` (or straight to `Reverted`).
    pub(crate) fn begin_revert(&mut self, reason: String) {
        let ids: Vec<String> = self.state.devices.keys().cloned().collect();
        let (mut reverts, mut cancels) = (0, 0);
        for id in &ids {
            match self.exit_for(id, true) {
                Some(Exit::Cancel) => cancels += 1,
                Some(Exit::Revert { .. }) => reverts += 1,
                None => {}
            }
        }
        self.quarantine();
        let message = format!(
            "reverting {}: {reverts} devices switch back, {cancels} cancelled; {reason}",
            self.spec.version
        );
        self.decide(None, DecisionKind::Reverting, message);
        self.state.status = Status::Reverting { reason };
        self.check_reverted();
    }

    /// Decides and issues the exit of one device. With `revert` false (abort), devices that
    /// already left their previous release keep the new one and get nothing.
    fn exit_for(&mut self, id: &str, revert: bool) -> Option<Exit> {
        let view = self.views.get(id).copied();
        let version = self.spec.version.as_str();
        let rec = self.state.devices.get(id)?;
        if rec.assigned_at.is_none() || rec.exit.is_some() {
            return None;
        }
        let left = view.is_none_or(|v| v.left_previous(version));
        let exit = match (&rec.from_version, left) {
            (Some(from), true) if revert => Exit::Revert {
                to_version: from.clone(),
            },
            (_, true) if !revert || view.is_none() => return None,
            _ => Exit::Cancel,
        };
        let action = match &exit {
            Exit::Revert { to_version } => Action::Revert {
                device: id.to_owned(),
                to_version: to_version.clone(),
            },
            Exit::Cancel => Action::Cancel {
                device: id.to_owned(),
            },
        };
        self.actions.push(action);
        if let Some(rec) = self.state.devices.get_mut(id) {
            rec.exit = Some(exit.clone());
        }
        Some(exit)
    }

    fn quarantine(&mut self) {
        let classes: Vec<(String, String)> = self
            .failures_by_class(None)
            .into_iter()
            .filter(|(hw, _)| !self.state.quarantined.contains(*hw))
            .map(|(hw, kinds)| {
                let detail: Vec<String> = kinds.iter().map(|(k, n)| format!("{} {n}", k.name())).collect();
                (hw.to_owned(), detail.join(", "))
            })
            .collect();
        for (hw_class, detail) in classes {
            let reason = format!("{} failed on hw={hw_class}: {detail}", self.spec.version);
            self.actions.push(Action::Quarantine {
                version: self.spec.version.clone(),
                hw_class: hw_class.clone(),
                reason: reason.clone(),
            });
            self.decide(None, DecisionKind::Quarantined, format!("quarantined {reason}"));
            self.state.quarantined.insert(hw_class);
        }
    }

    /// `Reverting` → `Reverted` once every device that got an exit is back on its previous
    /// release and not updating to this one. Devices no longer listed do not block.
    pub(crate) fn check_reverted(&mut self) {
        if !matches!(self.state.status, Status::Reverting { .. }) {
            return;
        }
        self.revert_late_switchers();
        let Status::Reverting { reason } = &self.state.status else {
            return;
        };
        let pending = self
            .state
            .devices
            .iter()
            .filter(|(_, r)| r.exit.is_some())
            .filter(|(id, r)| !self.is_back(id, r))
            .count();
        if pending > 0 {
            return;
        }
        let reason = reason.clone();
        let message = format!(
            "reverted {}: every touched device is back on its previous release",
            self.spec.version
        );
        self.decide(None, DecisionKind::Reverted, message);
        self.state.status = Status::Reverted { reason };
    }

    /// A cancelled device that switched to this release before the cancel reached it (it was
    /// already rebooting into it) now runs it, committed: `Stay` keeps it there, so it gets a
    /// revert to its previous release instead (its other slot still holds that).
    fn revert_late_switchers(&mut self) {
        let version = self.spec.version.as_str();
        let late: Vec<(String, String)> = (self.state.devices.iter())
            .filter(|(_, r)| r.exit == Some(Exit::Cancel))
            .filter_map(|(id, r)| {
                let view = self.views.get(id.as_str())?;
                let settled_on_new =
                    view.active_version.as_deref() == Some(version) && !view.in_flight(version);
                settled_on_new.then(|| r.from_version.clone().map(|from| (id.clone(), from)))?
            })
            .collect();
        for (id, to_version) in late {
            self.actions.push(Action::Revert {
                device: id.clone(),
                to_version: to_version.clone(),
            });
            if let Some(rec) = self.state.devices.get_mut(&id) {
                rec.exit = Some(Exit::Revert { to_version });
            }
        }
    }

    fn is_back(&self, id: &str, rec: &DeviceRecord) -> bool {
        let Some(view) = self.views.get(id) else {
            return true;
        };
        let version = self.spec.version.as_str();
        let on_previous = match &rec.from_version {
            Some(from) => view.active_version.as_deref() == Some(from.as_str()),
            None => view.active_version.as_deref() != Some(version),
        };
        on_previous && !view.in_flight(version)
    }

    /// Stops the rollout: Cancel to assigned devices that have not switched slots yet.
    pub(crate) fn abort(&mut self, reason: String) {
        let ids: Vec<String> = (self.state.devices.iter())
            .filter(|(_, r)| r.failure.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let cancelled = ids.iter().filter_map(|id| self.exit_for(id, false)).count();
        let message = format!(
            "aborted {}: {cancelled} devices cancelled; {reason}",
            self.spec.version
        );
        self.decide(None, DecisionKind::Aborted, message);
        self.state.status = Status::Aborted { reason };
    }
}
