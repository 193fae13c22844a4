//! Wave planning: canaries covering every hardware class, then devices spread across sites.
//!
//! Wave 1 first takes one device of every hardware class (from the least used site so far),
//! then fills up round-robin across sites. Later waves are filled round-robin across sites too.
//! Inside a site, devices are taken in seeded rank order; sites are visited in seeded order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::policy::Policy;
use crate::rng::rank;

/// A device to place in a wave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Device id.
    pub id: &'a str,
    /// Site name ("" for none).
    pub site: &'a str,
    /// Hardware class.
    pub hw_class: &'a str,
}

/// Per-site queues of devices in rank order, and the seeded site order.
struct Pools<'a> {
    queues: BTreeMap<&'a str, VecDeque<Candidate<'a>>>,
    site_rank: BTreeMap<&'a str, u64>,
}

impl<'a> Pools<'a> {
    fn new(seed: u64, devices: &[Candidate<'a>]) -> Self {
        let mut sorted = devices.to_vec();
        sorted.sort_by_key(|c| (rank(seed, c.id), c.id));
        let mut queues: BTreeMap<&str, VecDeque<Candidate>> = BTreeMap::new();
        for c in sorted {
            queues.entry(c.site).or_default().push_back(c);
        }
        let site_rank = queues
            .keys()
            .map(|s| (*s, rank(seed, &format!("site:{s}"))))
            .collect();
        Self { queues, site_rank }
    }

    /// The non-empty site with the fewest picks so far (ties: seeded site order) that `accept`s
    /// at least one device; takes its best-ranked accepted device.
    fn take(
        &mut self,
        picks: &mut BTreeMap<&'a str, usize>,
        accept: impl Fn(&Candidate) -> bool,
    ) -> Option<Candidate<'a>> {
        let site = self
            .queues
            .iter()
            .filter(|(_, q)| q.iter().any(&accept))
            .map(|(s, _)| *s)
            .min_by_key(|s| (picks.get(s).copied().unwrap_or(0), self.site_rank.get(s), *s))?;
        let queue = self.queues.get_mut(site)?;
        let at = queue.iter().position(&accept)?;
        let chosen = queue.remove(at)?;
        *picks.entry(site).or_default() += 1;
        Some(chosen)
    }

    fn fill(&mut self, wave: &mut Vec<String>, picks: &mut BTreeMap<&'a str, usize>, size: usize) {
        while wave.len() < size {
            match self.take(picks, |_| true) {
                Some(c) => wave.push(c.id.to_owned()),
                None => break,
            }
        }
    }
}

/// Device ids per wave (one list per policy wave; later lists may be empty).
///
/// Same seed and same device set give the same plan, whatever the input order.
pub fn plan_waves(seed: u64, policy: &Policy, devices: &[Candidate]) -> Vec<Vec<String>> {
    let eligible = devices.len();
    let mut pools = Pools::new(seed, devices);
    let mut waves = Vec::with_capacity(policy.waves.len());
    for (i, spec) in policy.waves.iter().enumerate() {
        let mut wave = Vec::new();
        let mut picks = BTreeMap::new();
        let mut size = spec.size.devices(eligible);
        if i == 0 {
            pick_canaries(&mut pools, &mut picks, &mut wave, devices);
            size = size.max(wave.len());
        }
        if i + 1 == policy.waves.len() {
            size = usize::MAX;
        }
        pools.fill(&mut wave, &mut picks, size);
        waves.push(wave);
    }
    waves
}

/// One device of every hardware class, each from the least used site so far.
fn pick_canaries<'a>(
    pools: &mut Pools<'a>,
    picks: &mut BTreeMap<&'a str, usize>,
    wave: &mut Vec<String>,
    devices: &[Candidate<'a>],
) {
    let classes: BTreeSet<&str> = devices.iter().map(|c| c.hw_class).collect();
    for class in classes {
        if let Some(c) = pools.take(picks, |c| c.hw_class == class) {
            wave.push(c.id.to_owned());
        }
    }
}
