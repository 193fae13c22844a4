//! End to end: the real agent library over fake hardware, the real server (in process) and a real
//! broker (the embedded one here; Mosquitto in `mosquitto_e2e.rs`): waves complete for a good release,
//! a release that fails health on one class halts in wave 1 and is reverted and quarantined, and a
//! device that the bootloader rolled back on its own is counted and quarantines the release.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use halyard_sim::device::Behavior;
use halyard_sim::harness::embedded_settings;
use serde_json::Value;
use support::*;

#[test]
fn good_release_completes_in_three_waves() {
    let w = world(2, &[], embedded_settings);
    w.line.upload("2.0.0", 1).unwrap();
    let _: Value = w
        .line
        .control
        .post("/api/v1/rollouts", &three_waves("2.0.0", "r-good"))
        .unwrap();
    let r = wait_rollout(&w.line, "r-good", "completed", 240);
    wait_versions(&w.line, &[("2.0.0", 8)], 30);
    assert_eq!(decisions_of("wave_started", &r).len(), 3, "{r:#}");
    assert_eq!(decisions_of("wave_soaked", &r).len(), 3, "{r:#}");
    let waves = r["rollout"]["state"]["waves"].as_array().unwrap();
    let sizes: Vec<usize> = waves
        .iter()
        .map(|w| w["devices"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 8, "{sizes:?}");
    let first: Vec<&str> = waves[0]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let devices: Value = w.line.control.get("/api/v1/devices").unwrap();
    let classes: std::collections::BTreeSet<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| first.contains(&d["id"].as_str().unwrap()))
        .map(|d| d["hardware_class"].as_str().unwrap())
        .collect();
    assert_eq!(
        classes.len(),
        2,
        "wave 1 must cover both hardware classes: {first:?}"
    );
}

#[test]
fn release_failing_health_on_one_class_halts_in_wave_one_and_reverts() {
    let w = world(2, &[("2.1.0", "pos-arm", Behavior::Unhealthy)], embedded_settings);
    w.line.upload("2.1.0", 1).unwrap();
    let _: Value = w
        .line
        .control
        .post("/api/v1/rollouts", &three_waves("2.1.0", "r-bad"))
        .unwrap();
    let r = wait_rollout(&w.line, "r-bad", "reverted", 240);
    wait_versions(&w.line, &[("1.0.0", 8)], 60);
    let state = &r["rollout"]["state"];
    for (id, d) in state["devices"].as_object().unwrap() {
        if d["wave_index"].as_u64() != Some(0) {
            assert!(
                d["assigned_at"].is_null(),
                "device {id} outside wave 1 was touched: {d}"
            );
        }
    }
    assert!(!decisions_of("breach", &r).is_empty(), "{r:#}");
    let releases: Value = w.line.control.get("/api/v1/releases").unwrap();
    let q: Vec<(String, String)> = releases
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["quarantines"].as_array().unwrap().clone())
        .map(|q| {
            (
                q["version"].as_str().unwrap().into(),
                q["hardware_class"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(q, vec![("2.1.0".to_string(), "pos-arm".to_string())]);
    // the quarantined release cannot be rolled out to that class again without an explicit override
    let again = w
        .line
        .control
        .post::<Value>("/api/v1/rollouts", &three_waves("2.1.0", "r-again"));
    assert!(
        again.is_err_and(|e| e.reason.contains("409")),
        "quarantine not enforced"
    );
}

#[test]
fn device_rolled_back_by_its_bootloader_is_counted_and_quarantines_the_release() {
    let w = world(2, &[("2.2.0", "pos-x86", Behavior::NoBoot)], embedded_settings);
    w.line.upload("2.2.0", 1).unwrap();
    let _: Value = w
        .line
        .control
        .post("/api/v1/rollouts", &three_waves("2.2.0", "r-noboot"))
        .unwrap();
    let r = wait_rollout(&w.line, "r-noboot", "reverted", 240);
    wait_versions(&w.line, &[("1.0.0", 8)], 60);
    let failed = decisions_of("device_failed", &r);
    assert!(failed.iter().any(|m| m.contains("rolled back")), "{failed:?}");
    let f = fleet(&w.line);
    assert!(
        !f["rolled_back"].as_array().unwrap().is_empty() || !failed.is_empty(),
        "{f}"
    );
    let releases: Value = w.line.control.get("/api/v1/releases").unwrap();
    let q: Vec<&str> = releases
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["quarantines"].as_array().unwrap().iter())
        .map(|q| q["hardware_class"].as_str().unwrap())
        .collect();
    assert_eq!(q, vec!["pos-x86"]);
}
