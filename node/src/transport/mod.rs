//! Transports: [`http`] fetches artifacts, [`mqtt`] carries signed messages to and from the server.
//! The protocol logic they share (sealing, verifying, sequence checks) is pure and lives in [`codec`].

pub mod codec;
pub mod http;
pub mod mqtt;
