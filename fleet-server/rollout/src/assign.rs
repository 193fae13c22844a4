//! Issuing installs to the active wave, inside site windows and under site caps.

use std::collections::BTreeMap;

use crate::engine::Ctx;
use crate::output::{Action, DecisionKind};
use crate::windows::{Window, WindowState};

/// Outcome of asking whether a device's site lets it start now.
enum Gate {
    Go(Option<Window>),
    Wait,
}

impl Ctx<'_> {
    /// Install for every not yet assigned device of the active wave whose site is open and
    /// below its cap, in wave order.
    pub(crate) fn assign(&mut self) {
        let index = self.state.wave_index;
        let Some(wave) = self.state.waves.get(index) else {
            return;
        };
        let ids = wave.devices.clone();
        let mut load = self.site_load();
        for id in ids {
            let Some(view) = self.views.get(id.as_str()).copied() else {
                continue;
            };
            let waiting = self
                .state
                .devices
                .get(&id)
                .is_some_and(|r| r.assigned_at.is_none() && r.exit.is_none());
            if !waiting {
                continue;
            }
            let site = view.site.clone().unwrap_or_default();
            let Gate::Go(window) = self.gate(&site, load.get(&site).copied().unwrap_or(0)) else {
                continue;
            };
            *load.entry(site).or_default() += 1;
            if let Some(rec) = self.state.devices.get_mut(&id) {
                rec.assigned_at = Some(self.now);
                rec.window = window;
                rec.from_version = view.active_version.clone();
            }
            self.actions.push(Action::Install {
                device: id,
                version: self.spec.version.clone(),
                window,
            });
        }
    }

    /// Devices updating now, per site: assigned and neither committed, failed nor exited, or
    /// reporting a busy phase (whatever release it is for).
    fn site_load(&self) -> BTreeMap<String, u32> {
        let mut load = BTreeMap::new();
        for view in self.views.values() {
            let ours = self.state.devices.get(view.id.as_str()).is_some_and(|r| {
                r.assigned_at.is_some() && r.committed_at.is_none() && r.failure.is_none() && r.exit.is_none()
            });
            if ours || view.busy() {
                *load.entry(view.site.clone().unwrap_or_default()).or_default() += 1;
            }
        }
        load
    }

    /// May a device of `site` (name, "" = none) start now, with `busy` devices of it updating?
    fn gate(&mut self, site: &str, busy: u32) -> Gate {
        if site.is_empty() {
            return Gate::Go(None);
        }
        let Some(s) = self.sites.get(site).copied() else {
            self.site_error(site, format!("site {site} is not configured; its devices wait"));
            return Gate::Wait;
        };
        if s.max_concurrent.is_some_and(|cap| busy >= cap) {
            return Gate::Wait;
        }
        if !self.spec.policy.respect_windows {
            return Gate::Go(None);
        }
        match s.window_at(self.now) {
            Ok(WindowState::Always) => Gate::Go(None),
            Ok(WindowState::Open(w)) => Gate::Go(Some(w)),
            Ok(WindowState::Closed) => Gate::Wait,
            Err(e) => {
                self.site_error(site, format!("{e}; its devices wait"));
                Gate::Wait
            }
        }
    }

    /// Reports a site configuration problem once.
    fn site_error(&mut self, site: &str, message: String) {
        if self.state.site_errors.insert(site.to_owned()) {
            let index = self.state.wave_index;
            self.decide(Some(index), DecisionKind::SiteError, message);
        }
    }
}
