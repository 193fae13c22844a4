//! Named crash points (zincati style): every durable step of the agent's own files (journal, identity,
//! download file) calls [`CrashPoints::reach`] first, so a crash test can cut the power between any two
//! of them. Production code uses [`NoCrash`].

use std::fmt;

/// The power went at a crash point: the operation did not happen, nor anything after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("power lost at crash point {point}")]
pub struct PowerLost {
    /// The point reached.
    pub point: &'static str,
}

/// Where a test may cut the power.
pub trait CrashPoints: fmt::Debug + Send + Sync {
    /// Called before the durable step named `point`; an error means the machine is off.
    fn reach(&self, point: &'static str) -> Result<(), PowerLost>;
}

/// Never cuts.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCrash;

impl CrashPoints for NoCrash {
    fn reach(&self, _point: &'static str) -> Result<(), PowerLost> {
        Ok(())
    }
}
