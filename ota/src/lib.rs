//! Halyard update tooling: keys, trust root, signed streamable bundles, deltas (see `docs/bundle-format.md`).
//!
//! - [`keys`]: Ed25519 keys as PKCS#8/SPKI PEM (openssl-compatible), key ids, signature entries.
//! - [`root`]: TUF-style trust root (`root.json`) with `root`/`release` roles, thresholds and rotation.
//! - [`manifest`]: the bundle manifest and its canonical JSON.
//! - [`bundle`]: the bundle file: [`bundle::writer`] builds and signs, [`bundle::reader`] verifies and
//!   streams payloads, [`bundle::install`] turns a payload into a verified target image.
//! - [`limits`]: size/count caps with documented defaults; [`stream`]: size-capped, hashing adapters.
//! - [`delta`]: memory-bounded binary delta engine (`diff`, streaming `apply`).
//! - [`cli`]: the `halyard-ota` command line (the binary is a thin wrapper).
//! - [`canonical`], [`hash`]: canonical JSON and SHA-256 digest helpers.

pub mod bundle;
pub mod canonical;
pub mod cli;
pub mod delta;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod keys;
pub mod limits;
pub mod manifest;
pub mod root;
pub mod stream;
