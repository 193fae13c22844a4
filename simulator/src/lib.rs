//! Halyard fleet simulator (`halyard-sim`): the real agent over fake hardware against the real server.
//!
//! Module map:
//! - [`fleet`]: the simulated fleet's keys, trust root, release images and signed bundles.
//! - [`device`]: one simulated device (real agent + `hardware` fakes) and how releases behave on it.
//! - [`control`]: a blocking client for the server's HTTP API.
//! - [`harness`]: an in-process server and a fleet of devices against it.
//!
//! Still to come (issue 6): scenario files, fault injection at scale, virtual time, reports, the demo.

pub mod control;
pub mod demo;
pub mod device;
pub mod fleet;
pub mod harness;
