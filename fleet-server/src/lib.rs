//! Halyard fleet server (`halyard-server`) and operator CLI (`halyardctl`).
//!
//! Module map:
//! - [`model`]: the records the server keeps; [`store`]: the `Store` trait, SQLite backend, migrations.

pub mod model;
pub mod store;
