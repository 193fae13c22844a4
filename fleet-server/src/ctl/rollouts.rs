//! `halyardctl rollouts list|show|create|pause|resume|abort|rollback|watch`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use ureq::http::Method;

use halyard_rollout::{Policy, Status};

use super::client::segment;
use super::table::{Table, key_values, time};
use super::watch::{RolloutDetail, decision_line, engine_state, wave_progress};
use super::{CtlError, Ctx, decode};
use crate::model::Rollout;

/// `rollouts` subcommands.
#[derive(Debug, Subcommand)]
pub enum RolloutsCmd {
    /// List rollouts
    List,
    /// Show a rollout: status, waves and decisions
    Show {
        /// Rollout id
        id: String,
    },
    /// Create a rollout from a TOML file (version, selector, seed, [policy] with [[policy.waves]])
    Create {
        /// The rollout file
        file: PathBuf,
        /// Roll out even where the release is quarantined
        #[arg(long)]
        override_quarantine: bool,
    },
    /// Stop issuing installs (in-flight devices carry on)
    Pause {
        /// Rollout id
        id: String,
    },
    /// Continue a paused rollout
    Resume {
        /// Rollout id
        id: String,
    },
    /// Stop the rollout; devices already past staging keep the release
    Abort {
        /// Rollout id
        id: String,
    },
    /// Send every touched device back to its previous release
    Rollback {
        /// Rollout id
        id: String,
    },
    /// Follow a rollout live until it completes, reverts or is aborted
    Watch {
        /// Rollout id
        id: String,
        /// Seconds between polls while the live event stream is unavailable
        #[arg(long, value_name = "SECS", default_value_t = 1)]
        interval: u64,
    },
}

/// The rollout file: the `POST /api/v1/rollouts` body, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub version: String,
    pub selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub policy: Policy,
    /// Same as `--override-quarantine` (either one turns it on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub override_quarantine: bool,
}

/// Runs a `rollouts` subcommand.
pub fn run(ctx: &Ctx, cmd: RolloutsCmd) -> Result<(), CtlError> {
    match cmd {
        RolloutsCmd::List => ctx.show(&ctx.client.get("/api/v1/rollouts")?, render_list),
        RolloutsCmd::Show { id } => {
            let answer = ctx.client.get(&format!("/api/v1/rollouts/{}", segment(&id)))?;
            ctx.show(&answer, render_detail)
        }
        RolloutsCmd::Create {
            file,
            override_quarantine,
        } => {
            let body = create_body(&read_rollout_file(&file)?, override_quarantine)?;
            let answer = ctx.client.send_json(Method::POST, "/api/v1/rollouts", &body)?;
            ctx.show(&answer, |v| {
                let r: Rollout = decode(v, "rollout")?;
                Ok(format!(
                    "created rollout {} of {} ({})\n",
                    r.id, r.version, r.status
                ))
            })
        }
        RolloutsCmd::Pause { id } => command(ctx, &id, "pause"),
        RolloutsCmd::Resume { id } => command(ctx, &id, "resume"),
        RolloutsCmd::Abort { id } => command(ctx, &id, "abort"),
        RolloutsCmd::Rollback { id } => command(ctx, &id, "rollback"),
        RolloutsCmd::Watch { id, interval } => {
            super::watch::watch(ctx, &id, Duration::from_secs(interval.max(1)))
        }
    }
}

fn command(ctx: &Ctx, id: &str, verb: &str) -> Result<(), CtlError> {
    let path = format!("/api/v1/rollouts/{}/{verb}", segment(id));
    let answer = ctx.client.send_json(Method::POST, &path, &json!({}))?;
    ctx.show(&answer, |v| {
        let r: Rollout = decode(v, "rollout")?;
        Ok(format!("rollout {} is {}\n", r.id, r.status))
    })
}

/// Reads and checks a rollout file (TOML syntax, field names, policy validity).
pub fn read_rollout_file(path: &Path) -> Result<RolloutFile, CtlError> {
    let text = std::fs::read_to_string(path).map_err(|source| CtlError::File {
        path: path.to_owned(),
        source,
    })?;
    parse_rollout_file(&text).map_err(|why| CtlError::Usage(format!("{}: {why}", path.display())))
}

/// Parses and validates the TOML of a rollout file.
pub fn parse_rollout_file(text: &str) -> Result<RolloutFile, String> {
    let file: RolloutFile = toml::from_str(text).map_err(|e| e.to_string())?;
    file.policy.validate().map_err(|e| e.to_string())?;
    Ok(file)
}

/// The JSON body of `POST /api/v1/rollouts`.
pub fn create_body(file: &RolloutFile, override_quarantine: bool) -> Result<Value, CtlError> {
    let mut body = serde_json::to_value(file).map_err(|e| CtlError::Usage(e.to_string()))?;
    if let Some(map) = body.as_object_mut() {
        let wanted = override_quarantine || file.override_quarantine;
        map.insert("override_quarantine".into(), Value::Bool(wanted));
    }
    Ok(body)
}

/// Current wave as `n/total` (`-` before planning).
fn wave_cell(rollout: &Rollout) -> String {
    match engine_state(rollout) {
        Some(s) if s.planned && !s.waves.is_empty() => {
            format!("{}/{}", (s.wave_index + 1).min(s.waves.len()), s.waves.len())
        }
        _ => "-".to_owned(),
    }
}

/// Status with the engine's reason (`paused: wave 1 breached ...`).
fn status_text(rollout: &Rollout) -> String {
    match engine_state(rollout).map(|s| s.status) {
        Some(
            Status::Paused { reason }
            | Status::Reverting { reason }
            | Status::Reverted { reason }
            | Status::Aborted { reason },
        ) => format!("{}: {reason}", rollout.status),
        _ => rollout.status.clone(),
    }
}

/// The rollout table.
pub fn render_list(value: &Value) -> Result<String, CtlError> {
    let rollouts: Vec<Rollout> = decode(value, "rollout list")?;
    let mut table = Table::new(&[
        "ID", "VERSION", "SELECTOR", "STATUS", "WAVE", "CREATED", "UPDATED",
    ]);
    for r in &rollouts {
        table.row(vec![
            r.id.clone(),
            r.version.clone(),
            r.selector.clone(),
            r.status.clone(),
            wave_cell(r),
            time(r.created_at),
            time(r.updated_at),
        ]);
    }
    Ok(table.render())
}

/// One rollout with its waves and decisions.
pub fn render_detail(value: &Value) -> Result<String, CtlError> {
    let detail: RolloutDetail = decode(value, "rollout")?;
    let r = &detail.rollout;
    let mut out = key_values(&[
        ("id", r.id.clone()),
        ("version", r.version.clone()),
        ("selector", r.selector.clone()),
        ("status", status_text(r)),
        ("wave", wave_cell(r)),
        ("created", time(r.created_at)),
        ("updated", time(r.updated_at)),
    ]);
    if let Some(state) = engine_state(r) {
        let mut waves = Table::new(&["WAVE", "DEVICES", "COMMITTED", "FAILED", "UPDATING", "EXITED"]);
        for (i, w) in wave_progress(&state).iter().enumerate() {
            waves.row(vec![
                (i + 1).to_string(),
                w.total.to_string(),
                w.committed.to_string(),
                w.failed.to_string(),
                w.updating.to_string(),
                w.exited.to_string(),
            ]);
        }
        if !waves.is_empty() {
            out.push_str(&format!("\nWaves:\n{}", waves.render()));
        }
    }
    out.push_str("\nDecisions:\n");
    if detail.decisions.is_empty() {
        out.push_str("none yet\n");
    }
    for d in &detail.decisions {
        out.push_str(&decision_line(d));
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use halyard_rollout::{Breach, Budget, WaveSize};

    const FILE: &str = r#"
version = "2.0.0"
selector = "hw=pos-x86"
seed = 7
[policy]
on_breach = "revert"
silent_after_secs = 1800
respect_windows = true
[[policy.waves]]
size = { percent = 5 }
soak_secs = 3600
failure_budget = { count = 0 }
[[policy.waves]]
size = { count = 100 }
soak_secs = 600
failure_budget = { percent = 2 }
"#;

    #[test]
    fn rollout_file_maps_onto_the_policy_types() {
        let file = parse_rollout_file(FILE).expect("valid file");
        assert_eq!(file.seed, Some(7));
        assert_eq!(file.policy.on_breach, Breach::Revert);
        assert_eq!(file.policy.waves[0].size, WaveSize::Percent(5));
        assert_eq!(file.policy.waves[1].failure_budget, Budget::Percent(2));
    }

    #[test]
    fn body_carries_the_override_and_omits_missing_fields() {
        let file = parse_rollout_file(FILE).expect("valid file");
        let body = create_body(&file, true).expect("serializes");
        assert_eq!(body["override_quarantine"], json!(true));
        assert_eq!(body["policy"]["waves"][0]["size"], json!({"percent": 5}));
        assert!(body.get("id").is_none());
        let in_file = parse_rollout_file(&format!("override_quarantine = true\n{FILE}")).expect("valid");
        assert_eq!(
            create_body(&in_file, false).expect("serializes")["override_quarantine"],
            json!(true)
        );
        assert_eq!(
            create_body(&file, false).expect("serializes")["override_quarantine"],
            json!(false)
        );
    }

    #[test]
    fn typos_and_invalid_policies_are_refused_locally() {
        let typo = FILE.replace("selector", "selektor");
        assert!(parse_rollout_file(&typo).is_err());
        let zero = FILE.replace("percent = 5", "percent = 0");
        let err = parse_rollout_file(&zero).expect_err("invalid percent");
        assert!(err.contains("wave 1"), "{err}");
        let no_waves = "version = \"1\"\nselector = \"\"\n[policy]\non_breach = \"pause\"\n\
                        silent_after_secs = 1\nrespect_windows = false\nwaves = []\n";
        assert!(
            parse_rollout_file(no_waves)
                .expect_err("no waves")
                .contains("no waves")
        );
    }

    #[test]
    fn detail_lists_decisions() {
        let value = json!({
            "rollout": {"id": "r1", "version": "2.0.0", "selector": "hw=pos-x86", "status": "paused",
                        "spec": {}, "state": {}, "created_at": 1_700_000_000, "updated_at": 1_700_000_000},
            "decisions": [{"rollout": "r1", "at": 1_700_000_000, "kind": "paused", "message": "operator"}]
        });
        let text = render_detail(&value).expect("renders");
        assert!(text.contains("status:   paused"), "{text}");
        assert!(
            text.ends_with("2023-11-14T22:13:20Z  paused  operator\n"),
            "{text}"
        );
    }
}
