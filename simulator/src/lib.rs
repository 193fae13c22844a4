//! Halyard fleet simulator (`halyard-sim`): the real agent over fake hardware against the real server.
//!
//! Module map:
//! - [`fleet`]: the simulated fleet's keys, trust root, release images and signed bundles.
//! - [`device`]: one simulated device (real agent + `hardware` fakes) and how releases behave on it.
//! - [`control`]: a blocking client for the server's HTTP API.
//! - [`harness`]: an in-process server and a fleet of devices against it.
//! - [`scenario`]: scenario files (TOML); [`expect`]: their assertions; [`run`]: runs one in real
//!   time and reports (text, JSON); [`chart`]: devices per version over time as SVG.
//! - [`demo`]: `halyard-sim demo`.
//!
//! Still to come (issue 6): fault injection (power cuts, partitions, broker/server restarts, lossy links,
//! clock skew, corrupt artifacts) from scenario files, virtual time, byte-identical event logs per seed.

pub mod chart;
pub mod control;
pub mod demo;
pub mod device;
pub mod expect;
pub mod fleet;
pub mod harness;
pub mod run;
pub mod scenario;
