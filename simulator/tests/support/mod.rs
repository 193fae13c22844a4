//! Shared set-up for the end-to-end tests: a server, a fleet on two sites and two hardware classes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use halyard_server::settings::Settings;
use halyard_sim::device::Behavior;
use halyard_sim::harness::{Fleetline, Group, ServerHandle};
use serde_json::{Value, json};

pub const IMAGE_LEN: usize = 96 * 1024;

pub struct World {
    pub line: Fleetline,
    pub server: ServerHandle,
    pub dir: tempfile::TempDir,
}

/// A server with `settings_for(dir)` and `per_group` devices in each of 4 groups (2 sites × 2 classes),
/// all on 1.0.0 and reporting.
pub fn world(
    per_group: usize,
    behaviors: &[(&str, &str, Behavior)],
    settings_for: impl Fn(&std::path::Path) -> Settings,
) -> World {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,halyard_server=info")
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(settings_for(&dir.path().join("server"))).unwrap();
    let mut line = Fleetline::new(server.control(), dir.path(), IMAGE_LEN, "1.0.0").unwrap();
    for (site, tz) in [
        ("store-berlin", "Europe/Berlin"),
        ("store-nyc", "America/New_York"),
    ] {
        let _: Value = line
            .control
            .put_json(
                &format!("/api/v1/sites/{site}"),
                &json!({"name": site, "tz": tz, "windows": [], "max_concurrent": null}),
            )
            .unwrap();
    }
    for site in ["store-berlin", "store-nyc"] {
        for hw in ["pos-x86", "pos-arm"] {
            let behaviors = behaviors
                .iter()
                .filter(|(_, h, _)| *h == hw)
                .map(|(v, _, b)| (v.to_string(), *b))
                .collect();
            line.add(
                &Group {
                    site: site.into(),
                    hardware_class: hw.into(),
                    count: per_group,
                    behaviors,
                },
                "1.0.0",
            )
            .unwrap();
        }
    }
    let total = 4 * per_group as u64;
    wait_versions(&line, &[("1.0.0", total)], 60);
    World { line, server, dir }
}

pub fn fleet(line: &Fleetline) -> Value {
    line.control.get("/api/v1/fleet").unwrap()
}

/// Waits until the fleet's active versions are exactly `want`.
pub fn wait_versions(line: &Fleetline, want: &[(&str, u64)], secs: u64) {
    let want: serde_json::Map<String, Value> = want.iter().map(|(v, n)| (v.to_string(), json!(n))).collect();
    let r = line.wait(&format!("fleet on {want:?}"), Duration::from_secs(secs), |c| {
        let f: Value = c.get("/api/v1/fleet")?;
        Ok((f["by_version"].as_object() == Some(&want)).then_some(()))
    });
    if let Err(e) = r {
        panic!("{e}; fleet now {}", fleet(line));
    }
}

/// Waits for a rollout status, returning `{rollout, decisions}`.
pub fn wait_rollout(line: &Fleetline, id: &str, status: &str, secs: u64) -> Value {
    let r = line.wait(
        &format!("rollout {id} {status}"),
        Duration::from_secs(secs),
        |c| {
            let r: Value = c.get(&format!("/api/v1/rollouts/{id}"))?;
            Ok((r["rollout"]["status"] == status).then_some(r))
        },
    );
    match r {
        Ok(v) => v,
        Err(e) => {
            let now: Value = line.control.get(&format!("/api/v1/rollouts/{id}")).unwrap();
            panic!(
                "{e}; rollout now {}\nfleet {}",
                serde_json::to_string_pretty(&now).unwrap(),
                fleet(line)
            );
        }
    }
}

/// A three-wave policy (20 %, 30 %, rest), short soak, zero failures tolerated, revert on breach.
pub fn three_waves(version: &str, id: &str) -> Value {
    let wave = |p: u8| json!({"size": {"percent": p}, "soak_secs": 2, "failure_budget": {"count": 0}});
    json!({"id": id, "version": version, "selector": "", "seed": 42, "policy": {
        "waves": [wave(20), wave(30), wave(50)], "on_breach": "revert", "silent_after_secs": 600, "respect_windows": true}})
}

pub fn decisions_of(kind: &str, r: &Value) -> Vec<String> {
    r["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == kind)
        .map(|d| d["message"].as_str().unwrap().to_owned())
        .collect()
}
