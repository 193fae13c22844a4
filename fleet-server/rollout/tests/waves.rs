//! Waves: a good rollout completes; advancing needs commit + health + soak; joiners; idempotency.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use halyard_rollout::*;

fn fleet() -> Fleet {
    let now = ts("2026-06-01T10:00:00Z");
    let devs = devices(&["ber", "nyc"], &["pos-arm", "kiosk-x86"], 10, now);
    let sites = vec![site("ber", "Europe/Berlin"), site("nyc", "America/New_York")];
    Fleet::new(three_waves(Breach::Revert), devs, sites, now)
}

#[test]
fn three_wave_good_rollout_completes() {
    let mut f = fleet();
    f.run(600, 100);
    assert_eq!(f.state.status, Status::Completed);
    let sizes: Vec<usize> = f.state.waves.iter().map(|w| w.devices.len()).collect();
    assert_eq!(sizes, vec![4, 12, 24], "10% of 40 rounded up, 30%, rest");
    assert_eq!(f.installs().len(), 40, "every device installed exactly once");
    assert!(f.devices.iter().all(|d| d.active_version.as_deref() == Some(NEW)));
    let kinds: Vec<DecisionKind> = f.decisions.iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == DecisionKind::WaveSoaked).count(),
        3
    );
    assert_eq!(kinds.last(), Some(&DecisionKind::Completed));
}

#[test]
fn wave_order_is_respected() {
    let mut f = fleet();
    f.run(600, 100);
    let order: Vec<usize> = f.installs().iter().map(|id| f.wave_of(id)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "no device of wave n+1 installs before every one of wave n"
    );
}

/// Rows: (what wave 1 devices report, whether wave 2 may start after the soak).
#[test]
fn advance_needs_commit_health_and_soak() {
    type Edit = fn(&mut DeviceView);
    let rows: [(&str, Edit, bool); 5] = [
        ("committed healthy", |_| {}, true),
        ("health unknown counts as healthy", |d| d.healthy = None, true),
        (
            "staged is not enough",
            |d| (d.phase, d.active_version) = (Phase::Staged, Some(OLD.into())),
            false,
        ),
        ("trial is not enough", |d| d.phase = Phase::Trial, false),
        (
            "installing is not enough",
            |d| (d.phase, d.active_version) = (Phase::Installing, Some(OLD.into())),
            false,
        ),
    ];
    for (name, edit, advances) in rows {
        let mut f = fleet();
        let first = f.step();
        f.apply(&first);
        for a in &first {
            if let Action::Install { device, .. } = a {
                edit(f.dev(device));
            }
        }
        f.tick(60);
        assert!(f.step().is_empty(), "{name}: nothing before the soak");
        f.tick(3600);
        let next = f.step();
        assert_eq!(f.state.wave_index == 1, advances, "{name}");
        assert_eq!(!next.is_empty(), advances, "{name}: wave 2 installs");
    }
}

#[test]
fn soak_counts_from_the_last_commit() {
    let mut f = fleet();
    let first = f.step();
    let ids = installed(&first);
    f.apply(&first);
    // The last canary commits 30 minutes late.
    let late = ids[0].clone();
    (f.dev(&late).phase, f.dev(&late).active_version) = (Phase::Trial, Some(OLD.into()));
    f.tick(60);
    f.step();
    f.tick(1800);
    react(f.dev(&late), NEW, Behave::Good);
    f.step();
    let soak_start = f.now;
    f.tick(3599);
    assert!(f.step().is_empty(), "soak of 3600 s not over");
    assert_eq!(f.state.waves[0].soak_started_at, Some(soak_start));
    f.tick(1);
    assert!(!f.step().is_empty(), "soak over: wave 2 starts");
}

#[test]
fn second_call_with_same_inputs_is_a_no_op() {
    let mut f = fleet();
    for _ in 0..30 {
        f.tick(600);
        let before = f.state.clone();
        let first = step(&f.spec, &before, &f.devices, &f.sites, f.now);
        let again = step(&f.spec, &first.state, &f.devices, &f.sites, f.now);
        assert!(again.actions.is_empty(), "actions repeated: {:?}", again.actions);
        assert!(
            again.decisions.is_empty(),
            "decisions repeated: {:?}",
            again.decisions
        );
        assert_eq!(again.state, first.state);
        f.step();
        f.apply(&first.actions);
    }
    assert_eq!(f.state.status, Status::Completed);
}

#[test]
fn device_enrolling_mid_rollout_joins_the_last_wave() {
    let mut f = fleet();
    f.run(600, 1);
    assert_eq!(f.state.wave_index, 0);
    f.devices.push(device("late-1", "ber", "pos-arm", f.now));
    f.step();
    assert_eq!(f.wave_of("late-1"), 2);
    assert!(f.state.devices["late-1"].joined_late);
    assert!(
        f.decisions
            .iter()
            .any(|d| d.kind == DecisionKind::Joined && d.message.contains("late-1"))
    );
    f.run(600, 100);
    assert_eq!(f.state.status, Status::Completed);
    assert_eq!(f.get("late-1").active_version.as_deref(), Some(NEW));
}

#[test]
fn joiners_handed_in_any_order_or_by_reference_give_the_same_step() {
    let mut f = fleet();
    f.run(600, 1);
    let late: Vec<_> = ["late-c", "late-a", "odd-b", "late-b"]
        .iter()
        .map(|id| {
            let hw = if id.starts_with("odd") {
                "gateway-riscv"
            } else {
                "pos-arm"
            };
            device(id, "ber", hw, f.now)
        })
        .collect();
    let mut forward = f.devices.clone();
    forward.extend(late.iter().cloned());
    let mut backward: Vec<&DeviceView> = late.iter().rev().collect();
    backward.extend(f.devices.iter().rev());
    let a = step(&f.spec, &f.state, &forward, &f.sites, f.now);
    let b = step(&f.spec, &f.state, &backward, &f.sites, f.now);
    assert_eq!(a, b, "the order devices are handed in changed the step");
    let joined: Vec<_> = a
        .decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::Joined)
        .map(|d| d.message.split_whitespace().nth(1).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        joined,
        ["late-a", "late-b", "late-c", "odd-b"],
        "joiners join by id"
    );
}

#[test]
fn device_of_a_new_hw_class_joins_the_active_wave() {
    let mut f = fleet();
    f.run(600, 1);
    f.devices.push(device("odd-1", "nyc", "gateway-riscv", f.now));
    let actions = f.step();
    assert_eq!(
        f.wave_of("odd-1"),
        0,
        "a class nobody tested yet goes in the active wave"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Install { device, .. } if device == "odd-1"))
    );
}

#[test]
fn joiner_in_the_last_wave_delays_completion_until_it_soaks() {
    let mut f = fleet();
    f.run(600, 100);
    assert_eq!(f.state.status, Status::Completed);
    let mut g = fleet();
    while g.state.wave_index < 2 {
        g.tick(600);
        let a = g.step();
        g.apply(&a);
    }
    g.devices.push(device("late-2", "ber", "kiosk-x86", g.now));
    g.behave = |d| {
        if d.id == "late-2" {
            Behave::StuckStaged
        } else {
            Behave::Good
        }
    };
    g.run(600, 50);
    assert_eq!(
        g.state.status,
        Status::Running,
        "a staged joiner keeps the last wave open"
    );
}

#[test]
fn devices_already_on_the_release_are_not_in_any_wave() {
    let mut f = fleet();
    f.dev("ber-pos-arm-0").active_version = Some(NEW.into());
    let first = f.step();
    f.apply(&first);
    assert!(f.state.already_current.contains("ber-pos-arm-0"));
    assert!(!f.state.devices.contains_key("ber-pos-arm-0"));
    f.run(600, 100);
    assert_eq!(f.installs().len(), 39);
}

#[test]
fn invalid_policy_aborts_with_the_reason() {
    let mut f = fleet();
    f.spec.policy.waves.clear();
    assert!(f.step().is_empty());
    assert!(matches!(&f.state.status, Status::Aborted { reason } if reason.contains("no waves")));
}

#[test]
fn count_waves_and_small_fleets() {
    let now = ts("2026-06-01T10:00:00Z");
    let spec = spec(
        vec![
            wave(WaveSize::Count(1), 60, Budget::Count(0)),
            wave(WaveSize::Count(5), 60, Budget::Count(0)),
            wave(WaveSize::Count(1), 60, Budget::Count(0)),
        ],
        Breach::Pause,
    );
    let mut f = Fleet::new(
        spec,
        devices(&["a"], &["x", "y"], 2, now),
        vec![site("a", "UTC")],
        now,
    );
    f.run(60, 50);
    let sizes: Vec<usize> = f.state.waves.iter().map(|w| w.devices.len()).collect();
    assert_eq!(
        sizes,
        vec![2, 2, 0],
        "wave 1 grows to cover both classes; the rest runs out"
    );
    assert_eq!(f.state.status, Status::Completed);
}

#[test]
fn a_device_listed_twice_is_planned_once() {
    let mut f = fleet();
    let dup = f.devices[0].clone();
    f.devices.push(dup);
    f.step();
    let placed: usize = f.state.waves.iter().map(|w| w.devices.len()).sum();
    assert_eq!(placed, 40);
}
