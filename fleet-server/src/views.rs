//! Translations from the server's records to the rollout engine's inputs.

use halyard_protocol::{AgentState, Slot};
use halyard_rollout::{DeviceView, MaintenanceWindow, Phase, Weekday};

use crate::model::{Device, Site, WindowSpec};

/// The engine's view of a device, from its last verified report.
pub fn device(d: &Device) -> DeviceView {
    let report = d.report.as_ref();
    let (active, other) = match report.map(|r| r.active) {
        Some(Slot::B) => (report.map(|r| &r.slot_b), report.map(|r| &r.slot_a)),
        _ => (report.map(|r| &r.slot_a), report.map(|r| &r.slot_b)),
    };
    let (phase, phase_version, reason) = report.map_or((Phase::Idle, None, None), |r| phase(&r.state));
    DeviceView {
        id: d.id.to_string(),
        site: d.site.clone(),
        hw_class: d.hardware_class.clone(),
        active_version: active.and_then(|s| s.version.clone()),
        other_version: other.and_then(|s| s.version.clone()),
        phase,
        phase_version,
        reason,
        healthy: report.and_then(|r| r.health.as_ref()).map(|h| h.healthy),
        last_seen: d.last_seen,
        online: d.online,
    }
}

fn phase(s: &AgentState) -> (Phase, Option<String>, Option<String>) {
    let v = |v: &String| Some(v.clone());
    match s {
        AgentState::Idle => (Phase::Idle, None, None),
        AgentState::Downloading { version, .. } => (Phase::Downloading, v(version), None),
        AgentState::Installing { version } => (Phase::Installing, v(version), None),
        AgentState::Staged { version } => (Phase::Staged, v(version), None),
        AgentState::Rebooting { version } => (Phase::Rebooting, v(version), None),
        AgentState::Trial { version } => (Phase::Trial, v(version), None),
        AgentState::Committed { version } => (Phase::Committed, v(version), None),
        AgentState::RolledBack { version, reason } => (Phase::RolledBack, v(version), Some(reason.clone())),
        AgentState::Failed { version, reason } => (Phase::Failed, version.clone(), Some(reason.clone())),
    }
}

/// A site record as the engine's type (unknown day names are dropped by validation at the API).
pub fn site(s: &Site) -> halyard_rollout::Site {
    halyard_rollout::Site {
        name: s.name.clone(),
        tz: s.tz.clone(),
        windows: s.windows.iter().map(window).collect(),
        max_concurrent: s.max_concurrent,
    }
}

fn window(w: &WindowSpec) -> MaintenanceWindow {
    MaintenanceWindow {
        days: w.days.iter().filter_map(|d| weekday(d)).collect(),
        start: w.start.clone(),
        end: w.end.clone(),
    }
}

/// `mon`..`sun` (or full English names).
pub fn weekday(d: &str) -> Option<Weekday> {
    Some(match d.to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}
