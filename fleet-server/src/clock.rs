//! Injected time: the server reads "now" only through a [`Clock`], so the simulator can run days of
//! waves in virtual time against the real server.

use std::fmt::Debug;

/// A source of the current time in Unix seconds.
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> i64;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}
