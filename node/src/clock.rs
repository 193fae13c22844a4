//! Injected time: [`Clock`] gives Unix seconds and waits; [`SystemClock`] is the real one and
//! [`ManualClock`] (tests, simulator) advances only when asked or when something waits on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time and waiting.
pub trait Clock: std::fmt::Debug + Send + Sync {
    /// Unix seconds.
    fn now(&self) -> u64;
    /// Wait `duration`.
    fn sleep(&self, duration: Duration);
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Virtual time: `sleep` advances it instantly. Clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    secs: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at `secs`.
    pub fn at(secs: u64) -> Self {
        Self {
            secs: Arc::new(AtomicU64::new(secs)),
        }
    }

    /// Move time forward.
    pub fn advance(&self, duration: Duration) {
        self.secs.fetch_add(duration.as_secs().max(1), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.secs.load(Ordering::SeqCst)
    }
    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}
