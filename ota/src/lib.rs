//! Halyard update tooling (see `docs/bundle-format.md`).
