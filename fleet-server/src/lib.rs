//! Halyard fleet server (`halyard-server`) and operator CLI (`halyardctl`).
//!
//! Module map (pure decisions live in the `halyard-rollout` crate; this crate is the I/O shell):
//! - [`server`]: `run(listener, shutdown, settings)`; [`background`]: a server on its own thread;
//!   [`settings`], [`clock`] (injected time), [`app`] (state shared by handlers and tasks).
//! - [`model`]: the records the server keeps; [`store`]: the `Store` trait, SQLite and PostgreSQL
//!   backends, migrations.
//! - [`broker`]: the embedded MQTT broker; [`mqtt`]: the server's MQTT client (ingest in, desired out),
//!   [`mqtt_tls`]: its broker URL and TLS (`mqtts://`) to an external broker;
//!   [`broker_auth`]: per-device MQTT credentials and the Mosquitto password/ACL files.
//! - [`ingest`]: verify and store signed device messages (MQTT and HTTPS fallback share it).
//! - [`leader`]: which replica runs the rollout engine (lease with a fencing epoch).
//! - [`engine`]: drives the rollout engine and commits each step atomically; [`desired`]: actions to
//!   signed `desired` envelopes; [`views`]: records to engine inputs; [`selector`]: device selectors.
//! - [`releases`]: bundle upload verification and the trust root; [`secrets`]: server key and tokens.
//! - [`tls`]: the fleet CA and server certificate (rcgen), HTTPS listener, MQTTS front (rustls, ring);
//!   [`mtls`]: device client certificates and their checks; [`mqtt_connect`]: the CONNECT reader the
//!   MQTTS front uses to hold a device to its certificate's id.
//! - [`api`]: HTTP (device endpoints, operator REST, artifacts); [`metrics`]: Prometheus text.
//! - `ctl`: the `halyardctl` operator CLI; [`dashboard`]: the operator web dashboard at `/`.

pub mod api;
pub mod app;
pub mod background;
pub mod broker;
pub mod broker_auth;
pub mod clock;
pub mod ctl;
pub mod dashboard;
pub mod deltas;
pub mod desired;
pub mod engine;
pub mod ingest;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod mqtt;
pub mod mqtt_connect;
pub mod mqtt_tls;
pub mod mtls;
pub mod releases;
pub mod secrets;
pub mod selector;
pub mod server;
pub mod settings;
pub mod store;
pub mod tls;
pub mod views;
