//! Property tests over whole simulated rollouts: idempotency, once-only actions, wave order,
//! and where a rollout ends given how each hardware class behaves.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use halyard_rollout::*;
use jiff::Timestamp;
use proptest::prelude::*;

fn behave_of(i: u8) -> Behave {
    [
        Behave::Good,
        Behave::Good,
        Behave::Unhealthy,
        Behave::InstallFails,
        Behave::RollsBack,
        Behave::Silent,
    ][usize::from(i % 6)]
}

struct Checks {
    installs: BTreeMap<String, usize>,
    exits: BTreeMap<String, usize>,
}

impl Checks {
    fn record(&mut self, f: &Fleet, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Install { device, .. } => {
                    *self.installs.entry(device.clone()).or_default() += 1;
                    let wave = f.wave_of(device);
                    for earlier in &f.state.waves[..wave] {
                        assert!(
                            earlier.completed_at.is_some(),
                            "{device} of wave {} installed early",
                            wave + 1
                        );
                    }
                }
                Action::Revert { device, .. } | Action::Cancel { device } => {
                    *self.exits.entry(device.clone()).or_default() += 1;
                }
                Action::Quarantine { .. } => {}
            }
        }
        assert!(self.installs.values().all(|n| *n == 1), "an install issued twice");
        assert!(self.exits.values().all(|n| *n == 1), "an exit issued twice");
    }
}

fn run_checked(f: &mut Fleet) {
    let mut checks = Checks {
        installs: BTreeMap::new(),
        exits: BTreeMap::new(),
    };
    for _ in 0..400 {
        f.tick(600);
        let out = step(&f.spec, &f.state, &f.devices, &f.sites, f.now);
        let again = step(&f.spec, &out.state, &f.devices, &f.sites, f.now);
        assert!(
            again.actions.is_empty() && again.decisions.is_empty(),
            "not idempotent"
        );
        assert_eq!(again.state, out.state);
        let actions = f.step();
        assert_eq!(actions, out.actions, "not deterministic");
        checks.record(f, &actions);
        f.apply(&actions);
        if matches!(
            f.state.status,
            Status::Completed | Status::Reverted { .. } | Status::Paused { .. }
        ) {
            return;
        }
    }
}

/// A generated fleet: device `i` at site `s{site}` of class `hw{class}` for each `(site, class)`,
/// class `hw{k}` behaving as `behaviours[k]`, on three waves that revert or pause on a breach.
fn generated(fleet: &[(u8, u8)], behaviours: &[u8], revert: bool, seed: u64, sites: Vec<Site>) -> Fleet {
    let now = ts("2026-06-01T10:00:00Z");
    let devs: Vec<DeviceView> = fleet
        .iter()
        .enumerate()
        .map(|(i, (s, c))| device(&format!("d{i}"), &format!("s{s}"), &format!("hw{c}"), now))
        .collect();
    let mut spec = three_waves(if revert { Breach::Revert } else { Breach::Pause });
    spec.seed = seed;
    let mut f = Fleet::new(spec, devs, sites, now);
    f.class_behave = (behaviours.iter().enumerate())
        .map(|(i, b)| (format!("hw{i}"), behave_of(*b)))
        .collect();
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn whole_rollouts_behave(
        fleet in prop::collection::vec((0u8..3, 0u8..4), 1..50),
        behaviours in prop::collection::vec(0u8..6, 4),
        revert in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let sites = (0..3).map(|s| site(&format!("s{s}"), "Europe/Berlin")).collect();
        let mut f = generated(&fleet, &behaviours, revert, seed, sites);
        let bad: BTreeSet<String> = f
            .devices
            .iter()
            .filter(|d| f.class_behave[&d.hw_class] != Behave::Good)
            .map(|d| d.hw_class.clone())
            .collect();
        run_checked(&mut f);
        let quarantined: BTreeSet<String> = f.actions.iter().filter_map(|a| match a {
            Action::Quarantine { hw_class, .. } => Some(hw_class.clone()),
            _ => None,
        }).collect();
        prop_assert!(quarantined.is_subset(&bad), "quarantined a good class");
        match (&f.state.status, bad.is_empty()) {
            (Status::Completed, true) => {}
            (Status::Reverted { .. }, false) if revert => prop_assert!(!quarantined.is_empty()),
            (Status::Paused { .. }, false) if !revert => {}
            (status, _) => prop_assert!(false, "ended {status:?} with bad classes {bad:?}"),
        }
        if !bad.is_empty() {
            let beyond_wave_1 = f.installs().iter().any(|id| f.wave_of(id) > 0);
            prop_assert!(!beyond_wave_1, "a failing class got past wave 1 (budget 0)");
        }
    }
}

/// Steps at `t` with the fleet's inputs unchanged; true when nothing would happen.
fn unchanged_at(f: &Fleet, t: Timestamp) -> bool {
    let out = step(&f.spec, &f.state, &f.devices, &f.sites, t);
    out.actions.is_empty() && out.decisions.is_empty() && out.state == f.state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A caller may skip steps until `quiet_until` when no input changed: probing times before it
    /// (and, for `None`, far ahead) must find nothing to do, through whole rollouts with windows,
    /// site caps, silent and failing devices.
    #[test]
    fn nothing_happens_before_quiet_until(
        fleet in prop::collection::vec((0u8..3, 0u8..4), 1..40),
        behaviours in prop::collection::vec(0u8..6, 4),
        revert in any::<bool>(),
        seed in any::<u64>(),
        tick in 60i64..1800,
    ) {
        let mut windowed = site("s1", "Europe/Berlin");
        windowed.windows = vec![MaintenanceWindow { days: vec![], start: "02:00".into(), end: "04:00".into() }];
        let mut capped = site("s2", "America/New_York");
        capped.max_concurrent = Some(1);
        let sites = vec![site("s0", "Europe/Berlin"), windowed, capped];
        let mut f = generated(&fleet, &behaviours, revert, seed, sites);
        let mut probed = 0;
        // Long enough (at least 33 hours) for the windowed site's window to come round.
        for _ in 0..2000 {
            f.tick(tick);
            let actions = f.step();
            f.apply(&actions);
            if !unchanged_at(&f, f.now) {
                continue;
            }
            let quiet = quiet_until(&f.spec, &f.state, &f.devices, f.now);
            let probes: Vec<i64> = match quiet {
                Some(q) => {
                    let (a, b) = (f.now.as_second(), q.as_second());
                    prop_assert!(b >= a, "quiet_until {q} is before now {}", f.now);
                    if b - a < 2 { vec![] } else { vec![a + 1, a + (b - a) / 2, b - 1] }
                }
                None => vec![f.now.as_second() + 86_400, f.now.as_second() + 40 * 86_400],
            };
            for p in probes {
                probed += 1;
                let t = Timestamp::from_second(p).unwrap();
                prop_assert!(unchanged_at(&f, t), "something happened at {t}, before quiet_until {quiet:?} (now {})", f.now);
            }
            if !matches!(f.state.status, Status::Running | Status::Reverting { .. }) {
                break;
            }
        }
        prop_assert!(probed > 0 || f.state.status != Status::Running, "nothing was probed");
    }
}
