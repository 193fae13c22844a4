//! Halyard device agent (`halyard-agent`), as a library the binary and the simulator share.
//!
//! Module map (pure core, I/O shell):
//! - [`fsm`]: the pure state machine `Idle → Downloading → Installing → Staged → Rebooting → Trial →
//!   Committed` (plus `RolledBack`, `Failed`); its table is `docs/agent-fsm.md`.
//! - [`driver`]: performs the state machine's actions against injected hardware, fetcher and clock.
//! - [`journal`]: atomic persistence of the state; [`durable`]: temp + fsync + rename + fsync dir.
//! - [`identity`]: the device's Ed25519 key, its `DeviceId` and the persisted sequence counter.
//! - [`enroll`]: enrollment with a one-time token; the stored server key and broker.
//! - [`client_cert`]: the TLS client key made on the device and the certificate issued for it.
//! - [`fetch`]: the [`fetch::Fetcher`] trait (byte ranges of an artifact) and its directory backend.
//! - [`install`]: verify a downloaded bundle and stream its image into the inactive slot.
//! - [`health`]: health checks (command, TCP, HTTP, systemd unit, server reachability) with timeouts.
//! - [`clock`]: injected time; [`faults`]: named crash points for power-cut tests.
//! - [`config`]: layered TOML (shipped defaults, `/etc/halyard/agent.toml`, `agent.d/` drop-ins)
//!   validated into typed settings.
//! - [`transport`]: the HTTP range fetcher, the MQTT event loop (TCP or TLS), the server's HTTP API
//!   (enrollment, polling fallback) and the pure codec between them and the signed envelopes of
//!   `halyard-protocol`.
//! - [`app`]: what the binary runs (`run`, `status`, offline `install`), the agent loop
//!   ([`app::Link`]) and the Linux backends chosen from config.

pub mod app;
pub mod client_cert;
pub mod clock;
pub mod config;
pub mod driver;
pub mod durable;
pub mod enroll;
pub mod faults;
pub mod fetch;
pub mod files;
pub mod fsm;
pub mod health;
pub mod identity;
pub mod install;
pub mod journal;
pub mod transport;
