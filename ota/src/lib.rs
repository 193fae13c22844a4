//! Halyard update tooling (see `docs/bundle-format.md`).
//!
//! - `delta`: memory-bounded binary delta engine (`diff`, streaming `apply`).

pub mod delta;
