//! SQLite backend: one connection in WAL mode behind a mutex (SQLite has one writer anyway), versioned
//! migrations on open, `synchronous=FULL` so a committed step survives a power cut of the server.

mod devices;
mod rollouts;
mod store_impl;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, StoreResult, migrations};

/// The embedded store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) fn json_err(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding: {e}")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it to the current schema.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path).map_err(db)?;
        Self::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(conn: Connection) -> StoreResult<Self> {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        // A page cache of 64 MiB (the default is 2 MiB): a fleet's device rows are read on every
        // ingest and engine pass, and a small cache turns each into reads from the OS.
        conn.pragma_update(None, "cache_size", -65536).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db)?;
        // Every statement is prepared from the cache; the default of 16 is fewer than the store uses.
        conn.set_prepared_statement_cache_capacity(64);
        let store = Self {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version this binary writes.
    pub fn schema_version() -> i64 {
        migrations::SQLITE.len() as i64
    }

    fn migrate(&self) -> StoreResult<()> {
        let mut conn = self.conn();
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)?;
        let supported = Self::schema_version();
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        for (i, sql) in migrations::SQLITE.iter().enumerate().skip(found as usize) {
            let tx = conn.transaction().map_err(db)?;
            tx.execute_batch(sql).map_err(db)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(db)?;
            tx.commit().map_err(db)?;
            tracing::info!(version = i + 1, "schema migrated");
        }
        Ok(())
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied (rusqlite rolls back
        // on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn meta_get(&self, key: &str) -> StoreResult<Option<String>> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)
    }

    pub(crate) fn meta_put(&self, key: &str, value: &str) -> StoreResult<()> {
        self.conn()
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(db)
    }
}
