//! Halyard fleet simulator (`halyard-sim`): the real agent over fake hardware against the real server.
//!
//! Module map:
//! - [`fleet`]: the simulated fleet's keys, trust root, release images and signed bundles.
//! - [`device`]: one simulated device (real agent + `hardware` fakes) and how releases behave on it.
//! - [`control`]: a blocking client for the server's HTTP API.
//! - [`harness`]: an in-process server and a fleet of devices against it.
//! - [`scenario`]: scenario files (TOML); [`expect`]: their assertions; [`run`]: runs one in real
//!   time and reports (text, JSON); [`chart`]: devices per version over time as SVG.
//! - [`faults`]: fault kinds and durations of scenario files.
//! - [`virt`]: virtual time (the server core and agents on one virtual clock, a simulated broker and
//!   network, every fault kind, one event log per seed).
//! - [`live`]: the live view (a bar per version) on a terminal.
//! - [`demo`]: `halyard-sim demo`.

pub mod chart;
pub mod control;
pub mod demo;
pub mod device;
mod enroll;
pub mod expect;
pub mod faults;
pub mod fleet;
pub mod harness;
pub mod live;
pub mod metrics;
pub mod run;
pub mod scenario;
pub mod virt;
