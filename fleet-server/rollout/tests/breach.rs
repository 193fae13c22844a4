//! Failure budgets: what counts as a failure, pause and revert policies, quarantine.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use halyard_rollout::*;

fn fleet(on_breach: Breach, behave: fn(&DeviceView) -> Behave) -> Fleet {
    let now = ts("2026-06-01T10:00:00Z");
    let devs = devices(&["ber", "nyc"], &["pos-arm", "kiosk-x86", "gw-x86"], 10, now);
    let sites = vec![site("ber", "Europe/Berlin"), site("nyc", "America/New_York")];
    let mut f = Fleet::new(three_waves(on_breach), devs, sites, now);
    f.behave = behave;
    f
}

fn arm_unhealthy(d: &DeviceView) -> Behave {
    if d.hw_class == "pos-arm" {
        Behave::Unhealthy
    } else {
        Behave::Good
    }
}

#[test]
fn release_failing_health_on_one_class_is_reverted_in_wave_1_and_quarantined_there() {
    let mut f = fleet(Breach::Revert, arm_unhealthy);
    f.run(600, 100);
    assert!(matches!(&f.state.status, Status::Reverted { reason } if reason.contains("wave 1 breached")));
    assert_eq!(f.state.wave_index, 0, "stopped in wave 1");
    let touched = f.installs();
    assert!(
        touched.iter().all(|id| f.wave_of(id) == 0),
        "nothing beyond wave 1 was installed"
    );
    let quarantined: Vec<&str> = f
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Quarantine {
                version, hw_class, ..
            } if version == NEW => Some(hw_class.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        quarantined,
        vec!["pos-arm"],
        "quarantine for the failing class only"
    );
    let reverts = f
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Revert { to_version, .. } if to_version == OLD));
    assert_eq!(
        reverts.count(),
        touched.len(),
        "every canary switched back (all had committed)"
    );
    assert!(f.devices.iter().all(|d| d.active_version.as_deref() == Some(OLD)));
    let breach = f
        .decisions
        .iter()
        .find(|d| d.kind == DecisionKind::Breach)
        .unwrap();
    assert!(breach.message.contains("hw=pos-arm"), "{}", breach.message);
    assert_eq!(breach.wave, Some(1));
}

/// Rows: (what the failing device does, the failure kind recorded).
#[test]
fn each_failure_kind_counts_against_the_budget() {
    let rows = [
        (Behave::Unhealthy, FailureKind::Unhealthy),
        (Behave::InstallFails, FailureKind::InstallFailed),
        (Behave::RollsBack, FailureKind::RolledBack),
        (Behave::Silent, FailureKind::Silent),
    ];
    for (behave, kind) in rows {
        let mut f = fleet(Breach::Pause, |_| Behave::Good);
        let first = f.step();
        let Some(Action::Install { device: victim, .. }) = first.first().cloned() else {
            panic!("no install")
        };
        f.apply(&first);
        react(f.dev(&victim), NEW, behave);
        f.behave = match behave {
            Behave::Silent => |d: &DeviceView| {
                if d.phase == Phase::Downloading {
                    Behave::Silent
                } else {
                    Behave::Good
                }
            },
            _ => |_: &DeviceView| Behave::Good,
        };
        f.run(300, 10);
        assert!(
            matches!(f.state.status, Status::Paused { .. }),
            "{behave:?}: {:?}",
            f.state.status
        );
        let failure = f.state.devices[&victim].failure.clone().unwrap();
        assert_eq!(failure.kind, kind, "{behave:?}");
    }
}

#[test]
fn pause_policy_pauses_with_the_reason_and_issues_nothing_more() {
    let mut f = fleet(Breach::Pause, arm_unhealthy);
    f.run(600, 100);
    let Status::Paused { reason } = &f.state.status else {
        panic!("{:?}", f.state.status)
    };
    assert!(
        reason.contains("wave 1 breached") && reason.contains("hw=pos-arm"),
        "{reason}"
    );
    assert!(
        !f.actions
            .iter()
            .any(|a| matches!(a, Action::Revert { .. } | Action::Quarantine { .. }))
    );
    let installs = f.installs().len();
    for _ in 0..10 {
        f.tick(3600);
        assert!(f.step().is_empty(), "a paused rollout issues nothing");
    }
    assert_eq!(f.installs().len(), installs);
}

#[test]
fn silent_device_counts_as_failure_only_after_the_limit() {
    let mut f = fleet(Breach::Pause, |_| Behave::Silent);
    let first = f.step();
    f.apply(&first);
    f.tick(600);
    f.step();
    assert_eq!(f.state.status, Status::Running, "600 s is the limit, not past it");
    f.tick(1);
    f.step();
    let Status::Paused { reason } = &f.state.status else {
        panic!("{:?}", f.state.status)
    };
    assert!(reason.contains("silent"), "{reason}");
}

#[test]
fn a_committed_device_quiet_through_a_long_soak_is_silent_only_once_offline() {
    let mut f = fleet(Breach::Pause, |_| Behave::Good);
    let first = f.step();
    f.apply(&first);
    f.step();
    let canary = f.state.waves[0].devices[0].clone();
    // Idle agents send nothing: time passes without reports.
    f.now = jiff::Timestamp::from_second(f.now.as_second() + 1200).unwrap();
    f.step();
    assert_eq!(
        f.state.status,
        Status::Running,
        "connected and quiet is not silent"
    );
    f.dev(&canary).online = false;
    f.now = jiff::Timestamp::from_second(f.now.as_second() + 1).unwrap();
    f.step();
    let Status::Paused { reason } = &f.state.status else {
        panic!("{:?}", f.state.status)
    };
    assert!(reason.contains("silent"), "{reason}");
}

#[test]
fn device_offline_before_assignment_gets_the_full_silence_limit() {
    let mut f = fleet(Breach::Pause, |_| Behave::Good);
    for d in &mut f.devices {
        d.last_seen -= 86_400;
    }
    let first = f.step();
    assert!(!first.is_empty());
    f.tick(300);
    f.step();
    assert_eq!(f.state.status, Status::Running);
}

#[test]
fn failures_within_budget_do_not_stop_the_rollout() {
    // 60 devices: wave 2 is 18 devices with a 10% budget = 1 tolerated failure.
    let mut f = fleet(Breach::Revert, |_| Behave::Good);
    while f.state.wave_index == 0 {
        f.tick(600);
        let a = f.step();
        f.apply(&a);
    }
    assert_eq!(f.state.waves[1].devices.len(), 18);
    let victim = f.state.waves[1].devices[3].clone();
    react(f.dev(&victim), NEW, Behave::InstallFails);
    f.run(600, 200);
    let failed: Vec<&String> = f
        .state
        .devices
        .iter()
        .filter(|(_, r)| r.failure.is_some())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(failed, vec![&victim]);
    assert_eq!(f.state.status, Status::Completed);
}

#[test]
fn revert_cancels_devices_that_have_not_switched_slots() {
    let mut f = fleet(Breach::Revert, |_| Behave::Good);
    let ids = installed(&f.step());
    assert!(ids.len() >= 4);
    react(f.dev(&ids[0]), NEW, Behave::Unhealthy);
    f.dev(&ids[1]).phase = Phase::Downloading;
    f.dev(&ids[1]).phase_version = Some(NEW.into());
    react(f.dev(&ids[2]), NEW, Behave::StuckStaged);
    react(f.dev(&ids[3]), NEW, Behave::InstallFails);
    f.tick(60);
    let actions = f.step();
    assert!(actions.contains(&Action::Revert {
        device: ids[0].clone(),
        to_version: OLD.into()
    }));
    assert!(actions.contains(&Action::Cancel {
        device: ids[1].clone()
    }));
    assert!(actions.contains(&Action::Revert {
        device: ids[2].clone(),
        to_version: OLD.into()
    }));
    assert!(actions.contains(&Action::Cancel {
        device: ids[3].clone()
    }));
    assert!(matches!(f.state.status, Status::Reverting { .. }));
    // Only once all are back on the old release is the rollout reverted.
    f.apply(&actions);
    f.dev(&ids[1]).phase = Phase::Installing;
    f.dev(&ids[1]).phase_version = Some(NEW.into());
    f.tick(60);
    assert!(f.step().is_empty());
    assert!(
        matches!(f.state.status, Status::Reverting { .. }),
        "one device still installing the bad release"
    );
    f.dev(&ids[1]).phase = Phase::Idle;
    f.tick(60);
    f.step();
    assert!(matches!(f.state.status, Status::Reverted { .. }));
}

#[test]
fn late_health_failure_of_an_earlier_wave_still_counts() {
    let mut f = fleet(Breach::Pause, |_| Behave::Good);
    while f.state.wave_index == 0 {
        f.tick(600);
        let a = f.step();
        f.apply(&a);
    }
    let canary = f.state.waves[0].devices[0].clone();
    f.dev(&canary).healthy = Some(false);
    f.tick(60);
    f.step();
    assert!(matches!(&f.state.status, Status::Paused { reason } if reason.contains("wave 1 breached")));
}

#[test]
fn a_failure_reported_before_the_install_was_issued_is_not_counted() {
    let mut f = fleet(Breach::Pause, |_| Behave::Good);
    for d in &mut f.devices {
        // An earlier attempt of the same release, reported an hour ago.
        (d.phase, d.phase_version) = (Phase::RolledBack, Some(NEW.into()));
        d.last_seen -= 3600;
    }
    let first = f.step();
    assert!(!first.is_empty());
    let again = f.step();
    assert!(again.is_empty());
    assert_eq!(
        f.state.status,
        Status::Running,
        "stale reports predate the install"
    );
    f.tick(60);
    f.step();
    assert!(
        matches!(f.state.status, Status::Paused { .. }),
        "the same state reported after the install counts"
    );
}

#[test]
fn a_cancelled_device_that_switched_anyway_is_reverted() {
    let mut f = fleet(Breach::Revert, |_| Behave::Good);
    let ids = installed(&f.step());
    assert!(ids.len() >= 2);
    react(f.dev(&ids[0]), NEW, Behave::Unhealthy);
    // Still downloading when the breach is decided: it is cancelled (`Stay`)...
    f.dev(&ids[1]).phase = Phase::Downloading;
    f.dev(&ids[1]).phase_version = Some(NEW.into());
    f.tick(60);
    let actions = f.step();
    assert!(actions.contains(&Action::Cancel {
        device: ids[1].clone()
    }));
    f.apply(&actions);
    // ...but the cancel reached it only after it had rebooted into the new release and committed.
    react(f.dev(&ids[1]), NEW, Behave::Good);
    f.tick(60);
    let actions = f.step();
    assert!(
        actions.contains(&Action::Revert {
            device: ids[1].clone(),
            to_version: OLD.into()
        }),
        "{actions:?}"
    );
    assert!(matches!(f.state.status, Status::Reverting { .. }));
}
