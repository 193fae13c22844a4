//! End-to-end updates through the real driver on simulated hardware: full and delta updates commit,
//! a failing health check rolls back, a kernel that never comes up falls back through the bootloader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use halyard_hardware::Slot::{A, B};
use halyard_hardware::block::faulty::PowerRail;
use halyard_hardware::power::PowerEvent;
use halyard_node::driver::{Halt, Outgoing};
use halyard_node::fsm::State;
use halyard_node::health::Check;
use halyard_protocol::{AgentState, DeltaOffer, Sha256};
use support::*;

struct Releases {
    v1: Vec<u8>,
    v2: Vec<u8>,
}

fn releases() -> Releases {
    let v1 = image_bytes(400 * 1024, 7);
    let mut v2 = v1.clone();
    v2[1000..1200].fill(0xAB);
    v2.extend_from_slice(&image_bytes(20 * 1024, 9));
    Releases { v1, v2 }
}

fn assert_committed(device: &Device, state: &State, image: &[u8]) {
    let State::Committed {
        slot,
        image: img,
        security_version,
        ..
    } = state
    else {
        panic!("{state:?}")
    };
    assert_eq!(
        (*slot, img.sha256, *security_version),
        (halyard_protocol::Slot::B, Sha256::of(image), 1)
    );
    assert_eq!(current_slot(device), B);
    assert_eq!(device.slot_hash(B, image.len() as u64), Sha256::of(image));
    let env = device.boot_env();
    assert!(env.state(B).successful && env.state(B).bootable);
}

#[test]
fn full_update_commits_and_reports_each_transition() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = releases();
    let full = publish(arts.path(), &full_bundle("2.0.0", 1, &r.v2));
    let device = Device::new(tmp.path(), arts.path(), &r.v1);
    let rail = PowerRail::always_on();
    device.bootloader(&rail).unwrap();
    let (mut driver, halt) = device.start(&rail).unwrap();
    assert_eq!((halt, driver.state()), (Halt::Waiting, &State::Idle));
    let halt = driver
        .desired(Some("r1".into()), install("2.0.0", &full, vec![]))
        .unwrap();
    assert_eq!(halt, Halt::Rebooting);
    assert!(matches!(driver.state(), State::Rebooting { armed: true, .. }));
    let outbox = driver.take_outbox();
    // Four transitions queued four reports; only the last, the state the device halted in, is sent.
    let reports: Vec<_> = outbox
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outgoing::Report(r) => Some((i, r.state.clone())),
            Outgoing::Event(_) => None,
        })
        .collect();
    assert!(
        matches!(reports.as_slice(), [(4, AgentState::Rebooting { .. })]),
        "{reports:?}"
    );
    let sent: Vec<_> = outbox
        .into_iter()
        .filter_map(|o| match o {
            Outgoing::Event(e) => Some(e.to),
            Outgoing::Report(_) => None,
        })
        .collect();
    assert!(
        matches!(
            sent.as_slice(),
            [
                AgentState::Downloading { .. },
                AgentState::Installing { .. },
                AgentState::Staged { .. },
                AgentState::Rebooting { .. }
            ]
        ),
        "{sent:?}"
    );
    drop(driver);
    assert_eq!(
        device.power.take_events(),
        [PowerEvent::Reboot],
        "watchdog never fired"
    );
    assert_eq!(device.bootloader(&rail).unwrap(), B);
    let (mut driver, halt) = device.start(&rail).unwrap();
    assert_eq!(halt, Halt::Waiting);
    assert_committed(&device, driver.state(), &r.v2);
    assert!(
        device.power.take_events().is_empty(),
        "health checks petted the watchdog in time"
    );
    let report = driver
        .take_outbox()
        .into_iter()
        .rev()
        .find_map(|o| match o {
            Outgoing::Report(r) => Some(r),
            Outgoing::Event(_) => None,
        })
        .unwrap();
    assert_eq!(
        (report.slot_b.version.as_deref(), report.slot_b.successful),
        (Some("2.0.0"), true)
    );
    assert!(!std::path::Path::new(&device.data_dir.join("download.bundle")).exists());
    // The retained desired state again, then another reboot: nothing changes.
    drop(driver);
    let again = run(&device, &install("2.0.0", &full, vec![]), rail, &always_boots);
    assert_eq!(again.boots, 1);
    assert_committed(&device, again.driver.state(), &r.v2);
}

#[test]
fn delta_is_used_when_its_source_runs() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = releases();
    let delta = publish(arts.path(), &delta_bundle("2.0.0", "1.0.0", &r.v1, &r.v2));
    // The full bundle is offered but not published: only the delta can succeed.
    let full_bytes = full_bundle("2.0.0", 1, &r.v2);
    let full = halyard_protocol::Artifact {
        url: "https://server.invalid/v1/artifacts/missing".into(),
        sha256: Sha256::of(&full_bytes),
        size: full_bytes.len() as u64,
    };
    assert!(
        delta.size * 4 < full.size,
        "delta {} vs full {}",
        delta.size,
        full.size
    );
    let device = Device::new(tmp.path(), arts.path(), &r.v1);
    let offer = DeltaOffer {
        source_sha256: Sha256::of(&r.v1),
        artifact: delta,
    };
    let done = run(
        &device,
        &install("2.0.0", &full, vec![offer]),
        PowerRail::always_on(),
        &always_boots,
    );
    assert_eq!((done.boots, done.cut), (2, false));
    assert_committed(&device, done.driver.state(), &r.v2);
}

#[test]
fn failing_health_check_rolls_back_to_the_old_slot() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = releases();
    let full = publish(arts.path(), &full_bundle("2.0.0", 1, &r.v2));
    let mut device = Device::new(tmp.path(), arts.path(), &r.v1);
    device.checks.push(Check::Command {
        program: "/bin/false".into(),
        args: vec![],
        timeout: std::time::Duration::from_secs(5),
    });
    let done = run(
        &device,
        &install("2.0.0", &full, vec![]),
        PowerRail::always_on(),
        &always_boots,
    );
    let State::RolledBack { reason, slot, .. } = done.driver.state() else {
        panic!("{:?}", done.driver.state())
    };
    assert!(
        reason.contains("health check failed: command:/bin/false"),
        "{reason}"
    );
    assert_eq!((*slot, done.boots), (Some(halyard_protocol::Slot::B), 3));
    assert_eq!(current_slot(&device), A);
    assert!(!device.boot_env().state(B).bootable);
    assert_eq!(device.slot_hash(A, r.v1.len() as u64), Sha256::of(&r.v1));
    assert_eq!(done.driver.record().security_floor, 0, "nothing was committed");
}

#[test]
fn a_kernel_that_never_starts_falls_back_through_the_bootloader() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = releases();
    let full = publish(arts.path(), &full_bundle("2.0.0", 1, &r.v2));
    let device = Device::new(tmp.path(), arts.path(), &r.v1);
    let panics_on_b = |_: &Device, slot| slot == A;
    let done = run(
        &device,
        &install("2.0.0", &full, vec![]),
        PowerRail::always_on(),
        &panics_on_b,
    );
    let State::RolledBack { reason, .. } = done.driver.state() else {
        panic!("{:?}", done.driver.state())
    };
    assert!(reason.contains("bootloader fell back"), "{reason}");
    assert_eq!(done.boots, 5, "1 + 3 tries on B + the fallback");
    assert_eq!(current_slot(&device), A);
}

#[test]
fn tampered_bundles_fail_before_any_boot() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = releases();
    let tampered = {
        let mut b = full_bundle("2.0.0", 1, &r.v2);
        let n = b.len();
        b[n - 10] ^= 1;
        publish(arts.path(), &b)
    };
    let device = Device::new(tmp.path(), arts.path(), &r.v1);
    let done = run(
        &device,
        &install("2.0.0", &tampered, vec![]),
        PowerRail::always_on(),
        &always_boots,
    );
    let State::Failed { reason, .. } = done.driver.state() else {
        panic!("{:?}", done.driver.state())
    };
    assert!(reason.contains("payload_hash_mismatch"), "{reason}");
    assert_eq!((done.boots, current_slot(&device)), (1, A));
    assert!(
        !device.boot_env().state(B).bootable,
        "the half-written slot stays unbootable"
    );
}

#[test]
fn a_bundle_below_the_committed_security_version_is_refused() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = releases();
    let v2 = publish(arts.path(), &full_bundle("2.0.0", 1, &r.v2));
    let v3 = publish(arts.path(), &full_bundle("3.0.0", 0, &image_bytes(100 * 1024, 3)));
    let device = Device::new(tmp.path(), arts.path(), &r.v1);
    let done = run(
        &device,
        &install("2.0.0", &v2, vec![]),
        PowerRail::always_on(),
        &always_boots,
    );
    assert_eq!(done.driver.record().security_floor, 1);
    drop(done);
    let done = run(
        &device,
        &install("3.0.0", &v3, vec![]),
        PowerRail::always_on(),
        &always_boots,
    );
    let State::Failed { reason, .. } = done.driver.state() else {
        panic!("{:?}", done.driver.state())
    };
    assert!(reason.contains("security_version_too_low"), "{reason}");
    assert_eq!(current_slot(&device), B, "still on the committed 2.0.0");
    assert_eq!(device.slot_hash(B, r.v2.len() as u64), Sha256::of(&r.v2));
}

#[test]
fn a_broken_delta_falls_back_to_the_full_bundle() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let r = releases();
    let full = publish(arts.path(), &full_bundle("2.0.0", 1, &r.v2));
    let mut patch = delta_bundle("2.0.0", "1.0.0", &r.v1, &r.v2);
    let n = patch.len();
    patch[n - 20] ^= 0x40;
    // Published under the digest the server announced, so the download itself verifies.
    let broken = publish(arts.path(), &patch);
    let device = Device::new(tmp.path(), arts.path(), &r.v1);
    let offer = DeltaOffer {
        source_sha256: Sha256::of(&r.v1),
        artifact: broken,
    };
    let rail = PowerRail::always_on();
    device.bootloader(&rail).unwrap();
    let (mut driver, _) = device.start(&rail).unwrap();
    assert_eq!(
        driver
            .desired(None, install("2.0.0", &full, vec![offer]))
            .unwrap(),
        Halt::Rebooting
    );
    let reasons: Vec<_> = driver
        .take_outbox()
        .into_iter()
        .filter_map(|o| match o {
            Outgoing::Event(e) => e.reason,
            Outgoing::Report(_) => None,
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("delta failed") && r.contains("payload_hash_mismatch")),
        "{reasons:?}"
    );
    drop(driver);
    let done = run(&device, &install("2.0.0", &full, vec![]), rail, &always_boots);
    assert_committed(&device, done.driver.state(), &r.v2);
}
