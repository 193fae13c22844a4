//! Canary choice: every hardware class in wave 1, spread across sites, deterministic per seed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use halyard_rollout::canary::{Candidate, plan_waves};
use halyard_rollout::*;
use proptest::prelude::*;

fn policy(first: u8) -> Policy {
    three_waves_with(first).policy
}

fn three_waves_with(first: u8) -> RolloutSpec {
    let mut s = three_waves(Breach::Revert);
    s.policy.waves[0].size = WaveSize::Percent(first);
    s
}

fn fleet_devices(spec: &[(u8, u8)]) -> Vec<DeviceView> {
    let now = ts("2026-06-01T10:00:00Z");
    spec.iter()
        .enumerate()
        .map(|(i, (s, c))| device(&format!("d{i}"), &format!("site{s}"), &format!("hw{c}"), now))
        .collect()
}

fn plan_of(seed: u64, first: u8, devs: &[DeviceView]) -> Vec<Vec<String>> {
    let mut spec = three_waves_with(first);
    spec.seed = seed;
    let out = step(&spec, &RolloutState::new(), devs, &[], ts("2026-06-01T10:00:00Z"));
    out.state.waves.iter().map(|w| w.devices.clone()).collect()
}

proptest! {
    #[test]
    fn wave_1_covers_every_hw_class_and_every_device_is_placed_once(
        fleet in prop::collection::vec((0u8..4, 0u8..6), 1..80),
        seed in any::<u64>(),
        first in 1u8..50,
    ) {
        let devs = fleet_devices(&fleet);
        let plan = plan_of(seed, first, &devs);
        let hw: BTreeMap<&str, &str> = devs.iter().map(|d| (d.id.as_str(), d.hw_class.as_str())).collect();
        let classes: BTreeSet<&str> = hw.values().copied().collect();
        let in_wave_1: BTreeSet<&str> = plan[0].iter().map(|id| hw[id.as_str()]).collect();
        prop_assert_eq!(in_wave_1, classes);
        let mut all: Vec<&String> = plan.iter().flatten().collect();
        all.sort();
        all.dedup();
        prop_assert_eq!(all.len(), devs.len());
        prop_assert_eq!(plan.iter().map(Vec::len).sum::<usize>(), devs.len());
    }

    #[test]
    fn same_seed_same_plan_whatever_the_input_order(
        fleet in prop::collection::vec((0u8..4, 0u8..6), 1..60),
        seed in any::<u64>(),
        rotate in 0usize..60,
    ) {
        let devs = fleet_devices(&fleet);
        let mut shuffled = devs.clone();
        shuffled.reverse();
        let k = rotate % shuffled.len();
        shuffled.rotate_left(k);
        prop_assert_eq!(plan_of(seed, 10, &devs), plan_of(seed, 10, &shuffled));
    }
}

#[test]
fn different_seeds_choose_different_canaries() {
    let devs = fleet_devices(
        &(0..120)
            .map(|i| ((i % 4) as u8, (i % 3) as u8))
            .collect::<Vec<_>>(),
    );
    let firsts: BTreeSet<Vec<String>> = (0..20u64)
        .map(|seed| {
            let mut w = plan_of(seed, 10, &devs).remove(0);
            w.sort();
            w
        })
        .collect();
    assert!(
        firsts.len() >= 19,
        "20 seeds gave only {} distinct canary sets",
        firsts.len()
    );
}

#[test]
fn canaries_are_spread_across_sites() {
    // 4 sites x 3 classes x 10 devices; wave 1 = 10% = 12 devices: 3 per site.
    let devs = fleet_devices(
        &(0..120)
            .map(|i| ((i % 4) as u8, ((i / 4) % 3) as u8))
            .collect::<Vec<_>>(),
    );
    for seed in 0..20 {
        let plan = plan_of(seed, 10, &devs);
        let mut per_site: BTreeMap<&str, usize> = BTreeMap::new();
        for id in &plan[0] {
            let d = devs.iter().find(|d| &d.id == id).unwrap();
            *per_site.entry(d.site.as_deref().unwrap()).or_default() += 1;
        }
        assert_eq!(
            per_site.values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3, 3],
            "seed {seed}"
        );
    }
}

#[test]
fn a_rare_class_is_always_a_canary() {
    let mut layout: Vec<(u8, u8)> = (0..99).map(|i| ((i % 3) as u8, 0)).collect();
    layout.push((2, 1));
    let devs = fleet_devices(&layout);
    for seed in 0..50 {
        assert!(
            plan_of(seed, 1, &devs)[0].contains(&"d99".to_owned()),
            "seed {seed}"
        );
    }
}

#[test]
fn plan_waves_is_usable_without_the_engine() {
    let c = |id, site, hw_class| Candidate { id, site, hw_class };
    let devs = [
        c("a", "s1", "x"),
        c("b", "s2", "y"),
        c("c", "s1", "y"),
        c("d", "s2", "x"),
    ];
    let plan = plan_waves(1, &policy(1), &devs);
    assert_eq!(plan.len(), 3);
    assert_eq!(plan[0].len(), 2, "one per class, one per site");
    let sites: BTreeSet<&str> = plan[0]
        .iter()
        .map(|id| devs.iter().find(|d| d.id == id).unwrap().site)
        .collect();
    assert_eq!(sites.len(), 2);
}
