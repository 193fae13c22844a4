//! A new image whose services start slowly: its health checks fail at first. Within the start-up
//! grace the agent keeps checking and commits once they pass for the stability window; without a
//! grace, or when the service is still down after it, the trial fails and the device rolls back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use halyard_hardware::Slot::{A, B};
use halyard_hardware::block::faulty::PowerRail;
use halyard_node::clock::Clock as _;
use halyard_node::fsm::State;
use halyard_node::health::{Check, Probe, Verdict};
use support::*;

/// A service that answers `secs` after it is first asked (the trial's first round).
fn slow_service(device: &Device, secs: u64) -> Check {
    let clock = device.clock.clone();
    let first: Arc<Mutex<Option<u64>>> = Arc::default();
    Check::Probe(Probe::new("service", move || {
        let now = clock.now();
        let start = *first.lock().unwrap().get_or_insert(now);
        if now >= start + secs {
            Verdict::Pass
        } else {
            Verdict::Fail(format!("starting, {} s to go", start + secs - now))
        }
    }))
}

/// Updates to v2 with the service taking `ready_after` seconds and the agent's grace `grace`.
fn update(ready_after: u64, grace: u64) -> (State, Device, halyard_hardware::Slot) {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let v1 = image_bytes(64 * 1024, 3);
    let v2 = image_bytes(64 * 1024, 4);
    let full = publish(arts.path(), &full_bundle("2.0.0", 1, &v2));
    let mut device = Device::new(tmp.path(), arts.path(), &v1);
    device.checks = vec![slow_service(&device, ready_after)];
    device.startup_grace = Duration::from_secs(grace);
    let done = run(
        &device,
        &install("2.0.0", &full, vec![]),
        PowerRail::always_on(),
        &always_boots,
    );
    let slot = current_slot(&device);
    (done.driver.state().clone(), device, slot)
}

#[test]
fn a_service_that_comes_up_within_the_grace_commits() {
    // Health rounds every 10 s, a 60 s stability window counted from the first passing round.
    let (state, device, slot) = update(45, 120);
    assert!(matches!(state, State::Committed { .. }), "{state:?}");
    assert_eq!(slot, B);
    assert!(device.boot_env().state(B).successful);
}

#[test]
fn without_a_grace_the_first_failing_round_rolls_back() {
    let (state, device, slot) = update(45, 0);
    let State::RolledBack { reason, .. } = &state else {
        panic!("{state:?}")
    };
    assert!(reason.contains("probe:service: starting, 45 s to go"), "{reason}");
    assert_eq!(slot, A);
    assert!(!device.boot_env().state(B).bootable);
}

#[test]
fn a_service_still_down_when_the_grace_ends_rolls_back() {
    let (state, _, slot) = update(300, 60);
    let State::RolledBack { reason, .. } = &state else {
        panic!("{state:?}")
    };
    assert!(reason.contains("probe:service: starting"), "{reason}");
    assert_eq!(slot, A);
}
