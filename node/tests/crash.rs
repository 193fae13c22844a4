//! The crash-anywhere test (issue 4): updates run end to end (download → install → stage → reboot
//! through the bootloader step → trial → commit or roll back) with the power cut at every write and
//! flush boundary of the slots, the GRUB environment, the journal and the download file, in turn, and
//! both cache behaviours (unflushed writes lost, or torn). After each cut the device reboots
//! (bootloader step, a new agent on the same media and journal) and runs to completion.
//!
//! Every run must end booting a slot that holds a known good release, marked successful, with a journal
//! that agrees with the slots, stable under one more reboot; and it must end where an uncut run ends
//! (a cut may delay an update, never cost it or change its verdict).
//!
//! Scenarios (GRUB environment unless named): a full update A→B, a delta update A→B, a second update
//! B→A (rewriting the fallback slot of a committed device), a full update on a redundant U-Boot
//! environment, and a release whose health check fails (rolled back to A).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use halyard_hardware::block::faulty::{CutPoint, PowerRail, Unflushed};
use halyard_node::driver::{Halt, wire_slot};
use halyard_node::fsm::State;
use halyard_node::health::Check;
use halyard_protocol::{DeltaOffer, DesiredAction, Sha256};
use support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Committed,
    RolledBack,
}

struct Scenario {
    name: &'static str,
    env: EnvKind,
    factory: Vec<u8>,
    /// An uncut update run before the one under test (the device starts committed on it).
    before: Option<DesiredAction>,
    desired: DesiredAction,
    /// Images the device may legitimately run.
    good: Vec<Sha256>,
    /// The image it must end on, and how.
    end: (Sha256, Verdict),
    failing_check: bool,
}

fn images() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let v1 = image_bytes(300 * 1024, 11);
    let mut v2 = v1.clone();
    v2[5000..9000].fill(0x5A);
    v2.extend_from_slice(&image_bytes(8 * 1024, 12));
    let mut v3 = v2.clone();
    v3[200_000..201_000].fill(0x33);
    (v1, v2, v3)
}

fn scenarios(arts: &Path) -> Vec<Scenario> {
    let (v1, v2, v3) = images();
    let full2 = publish(arts, &full_bundle("2.0.0", 1, &v2));
    let offer = DeltaOffer {
        source_sha256: Sha256::of(&v1),
        artifact: publish(arts, &delta_bundle("2.0.0", "1.0.0", &v1, &v2)),
    };
    let full3 = publish(arts, &full_bundle("3.0.0", 1, &v3));
    let (h1, h2, h3) = (Sha256::of(&v1), Sha256::of(&v2), Sha256::of(&v3));
    let scenario = |name, desired, good: &[Sha256], end| Scenario {
        name,
        env: EnvKind::Grub,
        factory: v1.clone(),
        before: None,
        desired,
        good: good.to_vec(),
        end,
        failing_check: false,
    };
    vec![
        scenario(
            "full",
            install("2.0.0", &full2, vec![]),
            &[h1, h2],
            (h2, Verdict::Committed),
        ),
        scenario(
            "delta",
            install("2.0.0", &full2, vec![offer]),
            &[h1, h2],
            (h2, Verdict::Committed),
        ),
        Scenario {
            before: Some(install("2.0.0", &full2, vec![])),
            ..scenario(
                "second",
                install("3.0.0", &full3, vec![]),
                &[h2, h3],
                (h3, Verdict::Committed),
            )
        },
        Scenario {
            env: EnvKind::UBootRedundant,
            ..scenario(
                "uboot",
                install("2.0.0", &full2, vec![]),
                &[h1, h2],
                (h2, Verdict::Committed),
            )
        },
        Scenario {
            failing_check: true,
            ..scenario(
                "unhealthy",
                install("2.0.0", &full2, vec![]),
                &[h1],
                (h1, Verdict::RolledBack),
            )
        },
    ]
}

/// Checks the end state of one run against the scenario.
fn check_end(device: &Device, s: &Scenario, done: &Finished, label: &str) {
    let current = current_slot(device);
    let record = done.driver.record();
    let image = record
        .images
        .get(wire_slot(current))
        .unwrap_or_else(|| panic!("{label}: no image recorded for {current}"));
    let on_slot = device.slot_hash(current, image.size);
    assert_eq!(
        on_slot, image.sha256,
        "{label}: journal disagrees with slot {current}"
    );
    assert!(
        s.good.contains(&on_slot),
        "{label}: slot {current} runs an unknown image"
    );
    let env = device.boot_env();
    assert!(
        env.state(current).successful,
        "{label}: slot {current} is not marked good: {env:?}"
    );
    let verdict = match done.driver.state() {
        State::Committed { slot, image, .. } => {
            assert_eq!((*slot, image.sha256), (wire_slot(current), on_slot), "{label}");
            Verdict::Committed
        }
        State::RolledBack { .. } => Verdict::RolledBack,
        other => panic!("{label}: ended in {other:?}"),
    };
    assert_eq!(
        (on_slot, verdict),
        s.end,
        "{label}: ended in {:?}",
        done.driver.state()
    );
}

/// One more boot, with the retained desired state delivered again, changes nothing.
fn check_fixed_point(device: &Device, s: &Scenario, before: &State, label: &str) {
    let rail = PowerRail::always_on();
    let slot = current_slot(device);
    assert_eq!(device.bootloader(&rail).unwrap(), slot, "{label}");
    let (mut driver, halt) = device.start(&rail).unwrap();
    let again = driver.desired(Some("r1".into()), s.desired.clone()).unwrap();
    assert_eq!(
        (halt, again, driver.state()),
        (Halt::Waiting, Halt::Waiting, before),
        "{label}"
    );
}

fn device_for(root: &Path, arts: &Path, s: &Scenario) -> Device {
    let dir = tempfile::tempdir_in(root).unwrap().keep(); // removed with `root`
    let mut device = Device::with_env(&dir, arts, &s.factory, s.env);
    if let Some(before) = &s.before {
        let done = run(&device, before, PowerRail::always_on(), &always_boots);
        assert!(
            matches!(done.driver.state(), State::Committed { .. }),
            "{}: setup",
            s.name
        );
    }
    if s.failing_check {
        device.checks.push(Check::Command {
            program: "/bin/false".into(),
            args: vec![],
            timeout: Duration::from_secs(5),
        });
    }
    device
}

/// Cut after every op of one scenario's update (both cache modes); returns (boundaries, cuts).
fn cut_everywhere(root: &Path, arts: &Path, s: &Scenario) -> (u64, u64) {
    let counting = PowerRail::always_on();
    let device = device_for(root, arts, s);
    let done = run(&device, &s.desired, counting.clone(), &always_boots);
    check_end(&device, s, &done, s.name);
    let ops = counting.counters().writes + counting.counters().flushes;
    assert!(ops > 40, "{}: only {ops} boundaries", s.name);
    let mut cuts = 0;
    for unflushed in [Unflushed::Lost, Unflushed::Torn] {
        for n in 0..ops {
            let label = format!("{} cut after op {n}/{ops} ({unflushed:?})", s.name);
            let device = device_for(root, arts, s);
            let done = run(
                &device,
                &s.desired,
                PowerRail::cut_at(CutPoint::AfterOps(n), unflushed),
                &always_boots,
            );
            assert!(done.cut, "{label}: the cut never happened");
            check_end(&device, s, &done, &label);
            let state = done.driver.state().clone();
            drop(done);
            check_fixed_point(&device, s, &state, &label);
            cuts += 1;
        }
    }
    (ops, cuts)
}

#[test]
fn power_cut_at_every_boundary_of_every_update() {
    // Power cuts come from the crash points and the rail, not from the filesystem, so the journal and
    // download files may live in memory: a tmpfs makes the thousands of fsyncs of this test free.
    let shm = Path::new("/dev/shm");
    let tmp = || {
        if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
    };
    let (root, arts) = (tmp().unwrap(), tmp().unwrap());
    let mut total = 0;
    for s in scenarios(arts.path()) {
        let (ops, cuts) = cut_everywhere(root.path(), arts.path(), &s);
        println!(
            "{:>9}: {ops:>3} write/flush boundaries, {cuts:>3} power cuts, all ending {:?}",
            s.name, s.end.1
        );
        total += cuts;
    }
    println!("power cuts tested: {total}");
    assert!(total >= 500, "{total}");
}
