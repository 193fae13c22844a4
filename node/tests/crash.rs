//! The crash-anywhere test (issue 4): a full and a delta update, end to end (download → install → stage
//! → reboot through the bootloader step → trial → commit), with the power cut at every write and flush
//! boundary of the slots, the GRUB environment, the journal and the download file, in turn, and both
//! cache behaviours (unflushed writes lost, or torn). After each cut the device reboots (bootloader step,
//! a new agent on the same media and journal) and runs to completion. Every run must end booting a slot
//! that holds a known good release, marked successful, with a journal that agrees with the slots, and
//! one more reboot must change nothing. Both releases are healthy, so every run must also commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use halyard_hardware::block::faulty::{CutPoint, PowerRail, Unflushed};
use halyard_node::driver::Halt;
use halyard_node::fsm::State;
use halyard_protocol::{DeltaOffer, DesiredAction, Sha256};
use support::*;

struct Scenario {
    name: &'static str,
    v1: Vec<u8>,
    v2: Vec<u8>,
    desired: DesiredAction,
}

fn scenarios(arts: &Path) -> Vec<Scenario> {
    let v1 = image_bytes(300 * 1024, 11);
    let mut v2 = v1.clone();
    v2[5000..9000].fill(0x5A);
    v2.extend_from_slice(&image_bytes(8 * 1024, 12));
    let full = publish(arts, &full_bundle("2.0.0", 1, &v2));
    let delta = publish(arts, &delta_bundle("2.0.0", "1.0.0", &v1, &v2));
    let offer = DeltaOffer {
        source_sha256: Sha256::of(&v1),
        artifact: delta,
    };
    vec![
        Scenario {
            name: "full",
            v1: v1.clone(),
            v2: v2.clone(),
            desired: install("2.0.0", &full, vec![]),
        },
        Scenario {
            name: "delta",
            v1,
            v2,
            desired: install("2.0.0", &full, vec![offer]),
        },
    ]
}

/// Checks the end state of one run and returns its outcome's name.
fn check_end(device: &Device, s: &Scenario, done: &Finished, label: &str) -> &'static str {
    let current = current_slot(device);
    let wire = halyard_node::driver::wire_slot(current);
    let record = done.driver.record();
    let image = record
        .images
        .get(wire)
        .unwrap_or_else(|| panic!("{label}: no image recorded for {current}"));
    assert_eq!(
        device.slot_hash(current, image.size),
        image.sha256,
        "{label}: journal disagrees with slot {current}"
    );
    let good = [Sha256::of(&s.v1), Sha256::of(&s.v2)];
    assert!(
        good.contains(&image.sha256),
        "{label}: slot {current} runs an unknown image"
    );
    let env = device.boot_env();
    assert!(
        env.state(current).successful,
        "{label}: running slot {current} is not marked good: {env:?}"
    );
    match done.driver.state() {
        State::Committed { slot, image, .. } => {
            assert_eq!((*slot, image.sha256), (wire, Sha256::of(&s.v2)), "{label}");
            assert_eq!(record.security_floor, 1, "{label}");
            "committed"
        }
        State::RolledBack { .. } | State::Failed { .. } => {
            assert_eq!(image.sha256, Sha256::of(&s.v1), "{label}");
            "rolled back or failed"
        }
        other => panic!("{label}: ended in {other:?}"),
    }
}

/// One more boot changes nothing.
fn check_fixed_point(device: &Device, s: &Scenario, before: &State, label: &str) {
    let rail = PowerRail::always_on();
    let slot = current_slot(device);
    assert_eq!(device.bootloader(&rail).unwrap(), slot, "{label}");
    let (mut driver, halt) = device.start(&rail).unwrap();
    assert_eq!(
        driver.desired(Some("r1".into()), s.desired.clone()).unwrap(),
        Halt::Waiting,
        "{label}"
    );
    assert_eq!((halt, driver.state()), (Halt::Waiting, before), "{label}");
}

fn run_once(root: &Path, arts: &Path, s: &Scenario, rail: PowerRail, label: &str) -> (Finished, Device) {
    let dir = tempfile::tempdir_in(root).unwrap();
    let device = Device::new(dir.path(), arts, &s.v1);
    let done = run(&device, &s.desired, rail, &always_boots);
    let _ = dir.keep(); // removed with `root`
    check_end(&device, s, &done, label);
    (done, device)
}

#[test]
fn power_cut_at_every_boundary_of_full_and_delta_updates() {
    // Power cuts come from the crash points and the rail, not from the filesystem, so the journal and
    // download files may live in memory: a tmpfs makes the ~4000 fsyncs of this test free.
    let shm = Path::new("/dev/shm");
    let tmp = || {
        if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
    };
    let (root, arts) = (tmp().unwrap(), tmp().unwrap());
    let mut total_cuts = 0u64;
    let mut outcomes = BTreeMap::new();
    for s in scenarios(arts.path()) {
        let counting = PowerRail::always_on();
        let (done, _) = run_once(root.path(), arts.path(), &s, counting.clone(), s.name);
        assert!(
            matches!(done.driver.state(), State::Committed { .. }),
            "uncut {} update commits",
            s.name
        );
        let ops = counting.counters().writes + counting.counters().flushes;
        assert!(ops > 50, "{}: only {ops} boundaries", s.name);
        for unflushed in [Unflushed::Lost, Unflushed::Torn] {
            for n in 0..ops {
                let label = format!("{} cut after op {n}/{ops} ({unflushed:?})", s.name);
                let rail = PowerRail::cut_at(CutPoint::AfterOps(n), unflushed);
                let (done, device) = run_once(root.path(), arts.path(), &s, rail, &label);
                assert!(done.cut, "{label}: the cut never happened");
                let outcome = check_end(&device, &s, &done, &label);
                // The releases are healthy, so a power cut may delay the update but never cost it.
                assert_eq!(outcome, "committed", "{label}");
                *outcomes.entry((s.name, outcome)).or_insert(0u64) += 1;
                let state = done.driver.state().clone();
                drop(done);
                check_fixed_point(&device, &s, &state, &label);
                total_cuts += 1;
            }
        }
        println!("{}: {ops} write/flush boundaries per update", s.name);
    }
    println!("power cuts tested: {total_cuts}; outcomes: {outcomes:?}");
    assert!(total_cuts >= 200, "{total_cuts}");
}
