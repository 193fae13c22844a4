//! `halyardctl devices list|show|label`.

use clap::Subcommand;
use serde::Deserialize;
use serde_json::{Value, json};
use ureq::http::Method;

use halyard_protocol::{AgentState, Report, Slot};

use super::client::{query_value, segment};
use super::table::{Table, key_values, list, opt, time};
use super::{CtlError, Ctx, decode};
use crate::model::{DesiredRecord, Device, DeviceEvent};

/// `devices` subcommands.
#[derive(Debug, Subcommand)]
pub enum DevicesCmd {
    /// List devices, optionally filtered by a selector
    List {
        /// e.g. hw=pos-x86,site=store-042,tag=beta,version=1.2.0,state=committed
        #[arg(long, value_name = "SELECTOR")]
        selector: Option<String>,
    },
    /// Show one device: inventory, desired state and event history
    Show {
        /// Device id
        id: String,
    },
    /// Replace a device's site and tags (no --site clears the site, no --tag clears the tags)
    Label {
        /// Device id
        id: String,
        /// Site name
        #[arg(long, value_name = "SITE")]
        site: Option<String>,
        /// Tag (repeat for several)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
}

/// `GET /api/v1/devices/{id}`.
#[derive(Debug, Deserialize)]
pub struct DeviceDetail {
    pub device: Device,
    #[serde(default)]
    pub events: Vec<DeviceEvent>,
    pub desired: Option<DesiredRecord>,
}

/// Runs a `devices` subcommand.
pub fn run(ctx: &Ctx, cmd: DevicesCmd) -> Result<(), CtlError> {
    match cmd {
        DevicesCmd::List { selector } => {
            let path = match selector {
                Some(s) => format!("/api/v1/devices?selector={}", query_value(&s)),
                None => "/api/v1/devices".to_owned(),
            };
            ctx.show(&ctx.client.get(&path)?, render_list)
        }
        DevicesCmd::Show { id } => {
            let answer = ctx.client.get(&format!("/api/v1/devices/{}", segment(&id)))?;
            ctx.show(&answer, render_detail)
        }
        DevicesCmd::Label { id, site, tags } => {
            let body = json!({ "site": site, "tags": tags });
            let path = format!("/api/v1/devices/{}/labels", segment(&id));
            let answer = ctx.client.send_json(Method::PUT, &path, &body)?;
            ctx.show(&answer, |v| render_list(&Value::Array(vec![v.clone()])))
        }
    }
}

/// The device table.
pub fn render_list(value: &Value) -> Result<String, CtlError> {
    let devices: Vec<Device> = decode(value, "device list")?;
    let mut table = Table::new(&[
        "ID",
        "HW",
        "SITE",
        "TAGS",
        "VERSION",
        "STATE",
        "ONLINE",
        "LAST SEEN",
    ]);
    for d in &devices {
        let report = d.report.as_ref();
        table.row(vec![
            d.id.to_string(),
            d.hardware_class.clone(),
            opt(d.site.as_ref()),
            list(&d.tags),
            opt(report.and_then(active_version)),
            report.map_or_else(|| "-".to_owned(), |r| state_name(&r.state).to_owned()),
            yes_no(d.online),
            time(d.last_seen),
        ]);
    }
    Ok(format!("{}{} device(s)\n", table.render(), devices.len()))
}

/// One device with its history.
pub fn render_detail(value: &Value) -> Result<String, CtlError> {
    let detail: DeviceDetail = decode(value, "device")?;
    let d = &detail.device;
    let mut pairs = vec![
        ("id", d.id.to_string()),
        ("product", d.product.clone()),
        ("hardware class", d.hardware_class.clone()),
        ("site", opt(d.site.as_ref())),
        ("tags", list(&d.tags)),
        ("online", yes_no(d.online)),
        ("last seen", time(d.last_seen)),
        ("enrolled", time(d.enrolled_at)),
    ];
    if let Some(r) = &d.report {
        pairs.extend(report_pairs(r));
    }
    if let Some(desired) = &detail.desired {
        pairs.push(("desired seq", desired.seq.to_string()));
        pairs.push(("desired rollout", opt(desired.rollout.as_ref())));
    }
    let mut events = Table::new(&["SEQ", "AT", "FROM", "TO", "ROLLOUT", "REASON"]);
    for e in &detail.events {
        events.row(vec![
            e.seq.to_string(),
            time(e.at),
            e.from.clone(),
            e.to.clone(),
            opt(e.rollout.as_ref()),
            opt(e.reason.as_ref()),
        ]);
    }
    let history = if events.is_empty() {
        "no events\n".to_owned()
    } else {
        events.render()
    };
    Ok(format!("{}\nHistory:\n{history}", key_values(&pairs)))
}

fn report_pairs(r: &Report) -> Vec<(&'static str, String)> {
    let slot = |s: Slot| match s {
        Slot::A => &r.slot_a,
        Slot::B => &r.slot_b,
    };
    let describe = |s: Slot| {
        let report = slot(s);
        let mark = if s == r.active { " (active)" } else { "" };
        format!(
            "{}{mark} bootable={} successful={}",
            opt(report.version.as_ref()),
            report.bootable,
            report.successful
        )
    };
    let health = r.health.as_ref().map(|h| {
        if h.healthy {
            "healthy".to_owned()
        } else {
            format!("failing: {}", h.failing.join("; "))
        }
    });
    vec![
        ("agent", r.agent_version.clone()),
        ("state", state_detail(&r.state)),
        ("slot a", describe(Slot::A)),
        ("slot b", describe(Slot::B)),
        ("health", opt(health)),
        ("last error", opt(r.last_error.as_ref())),
    ]
}

/// The version in the active slot.
pub fn active_version(report: &Report) -> Option<&String> {
    match report.active {
        Slot::A => report.slot_a.version.as_ref(),
        Slot::B => report.slot_b.version.as_ref(),
    }
}

/// The agent state's wire name (`committed`, `rolled_back`, ...).
pub fn state_name(state: &AgentState) -> &'static str {
    match state {
        AgentState::Idle => "idle",
        AgentState::Downloading { .. } => "downloading",
        AgentState::Installing { .. } => "installing",
        AgentState::Staged { .. } => "staged",
        AgentState::Rebooting { .. } => "rebooting",
        AgentState::Trial { .. } => "trial",
        AgentState::Committed { .. } => "committed",
        AgentState::RolledBack { .. } => "rolled_back",
        AgentState::Failed { .. } => "failed",
    }
}

/// The agent state with its version, progress or reason.
pub fn state_detail(state: &AgentState) -> String {
    let name = state_name(state);
    match state {
        AgentState::Idle => name.to_owned(),
        AgentState::Downloading { version, done, total } => {
            format!("{name} {version} ({done}/{total} bytes)")
        }
        AgentState::Installing { version }
        | AgentState::Staged { version }
        | AgentState::Rebooting { version }
        | AgentState::Trial { version }
        | AgentState::Committed { version } => format!("{name} {version}"),
        AgentState::RolledBack { version, reason } => format!("{name} {version}: {reason}"),
        AgentState::Failed { version, reason } => format!("{name} {}: {reason}", opt(version.as_ref())),
    }
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device_json() -> Value {
        json!({
            "id": "dev-1", "public_key": "00", "product": "pos", "hardware_class": "pos-x86",
            "site": "store-042", "tags": ["beta"], "enrolled_at": 1_700_000_000, "last_seen": 1_700_000_060,
            "online": true,
            "report": {
                "at": 1_700_000_060, "agent_version": "0.1.0", "product": "pos", "hardware_class": "pos-x86",
                "active": "b",
                "slot_a": {"version": "1.0.0", "image_sha256": null, "bootable": true, "successful": true},
                "slot_b": {"version": "2.0.0", "image_sha256": null, "bootable": true, "successful": true},
                "state": {"state": "committed", "version": "2.0.0"},
                "last_error": null, "health": {"healthy": true, "failing": [], "checked_at": 1_700_000_050}
            }
        })
    }

    #[test]
    fn list_shows_active_version_and_state() {
        let text = render_list(&json!([device_json()])).expect("renders");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID     HW       SITE"), "{text}");
        assert!(
            lines[1].contains("beta  2.0.0    committed  yes     2023-11-14T22:14:20Z"),
            "{text}"
        );
        assert_eq!(lines[2], "1 device(s)");
    }

    #[test]
    fn detail_shows_slots_and_history() {
        let answer = json!({
            "device": device_json(),
            "events": [{"device": "dev-1", "seq": 4, "at": 1_700_000_030, "rollout": "r1",
                        "from": "trial", "to": "committed", "reason": null}],
            "desired": null
        });
        let text = render_detail(&answer).expect("renders");
        assert!(
            text.contains("slot b:         2.0.0 (active) bootable=true"),
            "{text}"
        );
        assert!(
            text.contains("4    2023-11-14T22:13:50Z  trial  committed  r1"),
            "{text}"
        );
    }

    #[test]
    fn wrong_shape_is_a_decode_error() {
        let err = render_list(&json!({"devices": []})).expect_err("not a list");
        assert!(matches!(err, CtlError::Decode { .. }));
    }
}
