//! Transports: [`http`] fetches artifacts, [`mqtt`] carries signed messages to and from the server,
//! [`api`] is the server's HTTP API (enrollment, polling fallback). The protocol logic they share
//! (sealing, verifying, sequence checks) is pure and lives in [`codec`].

pub mod api;
pub mod codec;
pub mod http;
pub mod mqtt;
