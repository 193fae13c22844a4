//! Virtual time: the real server core and real agents run against one virtual clock, and a loop of
//! timed events (boots, deliveries, engine passes, faults) moves the world forward, so days of waves
//! take seconds. Messages travel through a simulated broker and network (latency, partitions, losses,
//! restarts); everything is ordered by (time, sequence), so one seed gives one event log, byte for
//! byte.
//!
//! - [`clock`]: world time and each device's view of it (skew, time spent in a step).
//! - [`link`]: one device's network conditions and the artifact fetcher behind them.
//! - [`device`]: a device (real agent driver over `hardware` fakes).
//! - [`server`]: the server core driven by the loop, its operator API on loopback.
//! - `steps`: the device steps of one instant, run on every core.
//! - [`world`]: the event loop and the broker's retained state; `inject`: faults; `rollouts`: engine
//!   passes and rollout statuses; [`log`]: the event log.
//! - [`scenario`]: a scenario file run in virtual time.

pub mod clock;
pub mod device;
mod inject;
pub mod link;
pub mod log;
mod rollouts;
pub mod scenario;
pub mod server;
mod steps;
pub mod world;

/// A 64-bit mix of a seed and a counter (SplitMix64's finalizer): the simulator's only randomness.
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(n.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
