//! Shared test support: the deterministic fixture generator.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fixtures;
