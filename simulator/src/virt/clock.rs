//! Virtual time. One [`VirtualTime`] is the world's clock (the server reads it); each device reads it
//! through a [`DeviceClock`] that adds the device's clock skew and the time the device itself spent in
//! a blocking step (a health-check window, a slow download), so a device can run "ahead" of the
//! world until the world catches up.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The world's clock, Unix seconds; moved only by the simulation loop.
#[derive(Debug, Clone, Default)]
pub struct VirtualTime(Arc<AtomicI64>);

impl VirtualTime {
    pub fn at(secs: i64) -> Self {
        Self(Arc::new(AtomicI64::new(secs)))
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock to `secs` (never backwards).
    pub fn set(&self, secs: i64) {
        self.0.fetch_max(secs, Ordering::SeqCst);
    }
}

impl halyard_server::clock::Clock for VirtualTime {
    fn now(&self) -> i64 {
        self.get()
    }
}

/// One device's view of time: world time + skew + what the device spent in its current step.
#[derive(Debug, Clone)]
pub struct DeviceClock {
    world: VirtualTime,
    skew: Arc<AtomicI64>,
    spent: Arc<AtomicU64>,
}

impl DeviceClock {
    pub fn new(world: VirtualTime) -> Self {
        Self {
            world,
            skew: Arc::default(),
            spent: Arc::default(),
        }
    }

    pub fn set_skew(&self, secs: i64) {
        self.skew.store(secs, Ordering::SeqCst);
    }

    /// Starts a step at the world's time: nothing spent yet.
    pub fn begin(&self) {
        self.spent.store(0, Ordering::SeqCst);
    }

    /// Seconds of world time the current step took.
    pub fn spent(&self) -> i64 {
        self.spent.load(Ordering::SeqCst) as i64
    }

    /// Spends `secs` (a download at the link's speed).
    pub fn spend(&self, secs: u64) {
        self.spent.fetch_add(secs, Ordering::SeqCst);
    }
}

impl halyard_node::clock::Clock for DeviceClock {
    fn now(&self) -> u64 {
        let t = self.world.get() + self.skew.load(Ordering::SeqCst) + self.spent();
        u64::try_from(t).unwrap_or(0)
    }

    fn sleep(&self, duration: Duration) {
        self.spend(duration.as_secs().max(1));
    }
}

impl halyard_hardware::watchdog::Clock for DeviceClock {
    fn now(&self) -> Duration {
        Duration::from_secs(halyard_node::clock::Clock::now(self))
    }
}
