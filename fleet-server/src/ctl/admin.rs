//! `halyardctl trust-root set|show`, `fleet` and `audit`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Subcommand;
use serde::Deserialize;
use serde_json::Value;
use ureq::http::Method;

use super::table::{Table, key_values, time};
use super::{CtlError, Ctx, decode, json_text, print};
use crate::model::AuditEntry;

/// `trust-root` subcommands.
#[derive(Debug, Subcommand)]
pub enum TrustRootCmd {
    /// Install or rotate the trust root (admin); a rotation must be signed by the old root
    Set {
        /// root.json
        file: PathBuf,
    },
    /// Print the current trust root
    Show,
}

/// `GET /api/v1/fleet`.
#[derive(Debug, Deserialize)]
pub struct FleetSummary {
    pub devices: u64,
    pub online: u64,
    #[serde(default)]
    pub by_version: BTreeMap<String, u64>,
    #[serde(default)]
    pub by_state: BTreeMap<String, u64>,
    #[serde(default)]
    pub by_site: BTreeMap<String, u64>,
    #[serde(default)]
    pub by_hardware_class: BTreeMap<String, u64>,
    #[serde(default)]
    pub rolled_back: Vec<RolledBack>,
}

/// A device that fell back to its old slot.
#[derive(Debug, Deserialize)]
pub struct RolledBack {
    pub device: String,
    pub version: String,
    pub reason: String,
}

/// Runs a `trust-root` subcommand.
pub fn run_trust_root(ctx: &Ctx, cmd: TrustRootCmd) -> Result<(), CtlError> {
    match cmd {
        TrustRootCmd::Set { file } => {
            let text = std::fs::read_to_string(&file).map_err(|source| CtlError::File {
                path: file.clone(),
                source,
            })?;
            let root: Value = serde_json::from_str(&text)
                .map_err(|e| CtlError::Usage(format!("{} is not JSON: {e}", file.display())))?;
            let answer = ctx.client.send_json(Method::PUT, "/api/v1/trust-root", &root)?;
            ctx.show(&answer, |v| {
                Ok(format!("trust root is now version {}\n", v["version"]))
            })
        }
        TrustRootCmd::Show => print(&json_text(&ctx.client.get("/api/v1/trust-root")?)),
    }
}

/// `fleet`: summary counts.
pub fn fleet(ctx: &Ctx) -> Result<(), CtlError> {
    ctx.show(&ctx.client.get("/api/v1/fleet")?, render_fleet)
}

/// `audit [--limit N]`.
pub fn audit(ctx: &Ctx, limit: Option<u32>) -> Result<(), CtlError> {
    let path = match limit {
        Some(n) => format!("/api/v1/audit?limit={n}"),
        None => "/api/v1/audit".to_owned(),
    };
    ctx.show(&ctx.client.get(&path)?, render_audit)
}

/// The fleet summary as counts and one table per breakdown.
pub fn render_fleet(value: &Value) -> Result<String, CtlError> {
    let f: FleetSummary = decode(value, "fleet summary")?;
    let mut out = key_values(&[
        ("devices", f.devices.to_string()),
        ("online", f.online.to_string()),
    ]);
    for (title, counts) in [
        ("VERSION", &f.by_version),
        ("STATE", &f.by_state),
        ("SITE", &f.by_site),
        ("HARDWARE CLASS", &f.by_hardware_class),
    ] {
        if counts.is_empty() {
            continue;
        }
        let mut table = Table::new(&[title, "DEVICES"]);
        for (key, n) in counts {
            table.row(vec![key.clone(), n.to_string()]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    if !f.rolled_back.is_empty() {
        let mut table = Table::new(&["ROLLED BACK", "VERSION", "REASON"]);
        for r in &f.rolled_back {
            table.row(vec![r.device.clone(), r.version.clone(), r.reason.clone()]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    Ok(out)
}

/// The audit table.
pub fn render_audit(value: &Value) -> Result<String, CtlError> {
    let entries: Vec<AuditEntry> = decode(value, "audit log")?;
    let mut table = Table::new(&["AT", "ACTOR", "ACTION", "TARGET", "DETAIL"]);
    for e in &entries {
        table.row(vec![
            time(e.at),
            e.actor.clone(),
            e.action.clone(),
            e.target.clone(),
            e.detail.clone(),
        ]);
    }
    Ok(table.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fleet_summary_tables() {
        let value = json!({
            "devices": 3, "online": 2, "by_version": {"1.0.0": 1, "2.0.0": 2},
            "by_state": {"committed": 3}, "by_site": {}, "by_hardware_class": {"pos-x86": 3},
            "rolled_back": [{"device": "dev-9", "version": "2.0.0", "reason": "health"}]
        });
        let text = render_fleet(&value).expect("renders");
        assert!(text.starts_with("devices: 3\nonline:  2\n"), "{text}");
        assert!(
            text.contains("VERSION  DEVICES\n1.0.0    1\n2.0.0    2\n"),
            "{text}"
        );
        assert!(text.contains("dev-9        2.0.0    health"), "{text}");
        assert!(!text.contains("SITE"), "empty breakdowns are left out: {text}");
    }
}
