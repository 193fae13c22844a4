//! `quiet_until`: how long a running rollout stays as it is when nothing but the clock moves, so a
//! caller may skip steps that cannot change anything (a soak waiting out its time, say).

use std::borrow::Borrow;
use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::device::DeviceView;
use crate::policy::RolloutSpec;
use crate::state::{RolloutState, Status};

/// When [`crate::step`] could next act differently on these same inputs (`state` as a step at `now`
/// returned it with no actions, the same `devices` and sites) only because time passed:
/// - `Some(t)`: not before `t` (`t == now`: any time, step again);
/// - `None`: never; only new inputs (a report, an operator, a new device) can change anything.
///
/// Time matters through a wave's soak, a device's silence limit and the end of the window an install
/// was issued for. A device of a started wave that was not assigned yet waits for a window or a site's
/// slot, and anything but a running rollout may be reverting or paused: both answer `now`.
pub fn quiet_until<V: Borrow<DeviceView>>(
    spec: &RolloutSpec,
    state: &RolloutState,
    devices: &[V],
    now: Timestamp,
) -> Option<Timestamp> {
    if state.status != Status::Running || !state.planned {
        return Some(now);
    }
    let views: BTreeMap<&str, &DeviceView> = devices
        .iter()
        .map(|d| (d.borrow().id.as_str(), d.borrow()))
        .collect();
    let limit = i64::try_from(spec.policy.silent_after_secs).unwrap_or(i64::MAX);
    let mut due: Option<i64> = None;
    let mut at = |t: i64| due = Some(due.map_or(t, |d| d.min(t)));
    for (id, rec) in &state.devices {
        if rec.wave_index > state.wave_index || rec.exit.is_some() || rec.failure.is_some() {
            continue;
        }
        let Some(view) = views.get(id.as_str()) else {
            continue;
        };
        if rec.assigned_at.is_none() {
            return Some(now);
        }
        if let Some(w) = rec.window {
            at(w.end.as_second());
        }
        // Silence counts once `now - max(last seen, since) > limit`.
        let since = rec
            .committed_at
            .or(rec.assigned_at)
            .map_or(i64::MIN, |t| t.as_second());
        at(view.last_seen.max(since).saturating_add(limit).saturating_add(1));
    }
    let active = state.waves.get(state.wave_index);
    if let Some(start) = active.and_then(|w| w.soak_started_at) {
        let soak = spec.policy.waves.get(state.wave_index).map_or(0, |w| w.soak_secs);
        at(start
            .as_second()
            .saturating_add(i64::try_from(soak).unwrap_or(i64::MAX)));
    }
    // A time past the calendar's end never comes.
    due.and_then(|t| Timestamp::from_second(t).ok())
        .map(|t| t.max(now))
}
