//! Halyard fleet simulator (`halyard-sim`): the real agent over fake hardware against the real server.
//!
//! Planned module map (issue 6): `device` (agent + fakes), `scenario` (TOML), `faults`, `clock`
//! (virtual and real time), `report` (text, JSON, chart), `demo`.
