//! Halyard device agent (`halyard-agent`).
//!
//! Planned module map (issue 4): `config` (layered TOML), `fsm` (pure state machine
//! `Idle → Downloading → Installing → Staged → Rebooting → Trial → Committed`), `driver` (performs the
//! state machine's actions), `journal` (atomic state persistence), `install` (verify and stream a bundle into
//! the inactive slot), `health` (health checks during the trial window), `transport::{mqtt, http}`,
//! `identity` (device key and enrollment).
