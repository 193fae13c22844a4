//! Wire types shared by `halyard-agent` and `halyard-server`: types only, no I/O.
//!
//! Planned module map (issue 4): `ids` (device id), `envelope` (signed envelope), `desired`, `report`,
//! `events`, `presence`, `topics` (all under `halyard/v1/devices/{device_id}/`). See `docs/protocol.md`.
