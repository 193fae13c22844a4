//! Halyard fleet server (`halyard-server`) and operator CLI (`halyardctl`).
//!
//! Planned module map (issue 5): `store` (the `Store` trait, SQLite and later PostgreSQL), `rollout`
//! (pure engine: waves, canaries, failure budgets, site windows), `ingest` (device reports and events),
//! `api` (operator REST under `/api/v1`, device HTTPS endpoints), `deltas` (server-side delta cache),
//! `auth`, `broker` (embedded MQTT broker), `dashboard`.
