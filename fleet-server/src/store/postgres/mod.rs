//! PostgreSQL backend, for several server replicas on one database. The synchronous `postgres` client
//! (the server calls the store from `spawn_blocking`) with a small fixed pool of connections, each
//! behind its own mutex and reconnected when the server closed it.
//!
//! Where the SQLite backend relies on being the only writer, this one takes row locks inside the
//! transaction (READ COMMITTED): the enrollment token row (`FOR UPDATE`: single use), the sequence
//! row (a conditional upsert: the replay guard), the lease row and the rollout row (an engine step is
//! fenced by the lease epoch and by the state it was computed from). Deadlocks and serialization
//! failures are retried. Modules: [`schema`] (migrations), `rows` (row mapping), `writes` (the
//! multi-statement transactions), `store_impl` (the trait), [`temp`] (throwaway databases for tests).

mod rows;
pub mod schema;
mod store_impl;
pub mod temp;
mod writes;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use postgres::{Client, Config, NoTls, Transaction};

use super::{StoreError, StoreResult};

/// Connections per store (per replica); PostgreSQL's default limit is 100 in total.
pub const DEFAULT_POOL: usize = 4;

/// Any key for `pg_advisory_xact_lock` that serializes concurrent migrations of one database.
const MIGRATION_LOCK: i64 = 0x4841_4c59_4152_4431;

/// How often a transaction that lost a deadlock or serialization race is retried.
const RETRIES: usize = 5;

/// The shared store.
pub struct PgStore {
    config: Config,
    conns: Vec<Mutex<Client>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("dbname", &self.config.get_dbname())
            .field("pool", &self.conns.len())
            .finish()
    }
}

pub(crate) fn db(e: postgres::Error) -> StoreError {
    StoreError::Backend(match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    })
}

fn retryable(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code()
        .is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// A failure inside a transaction: either the database's (maybe retryable) or the store's.
pub(crate) enum TxError {
    Db(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for TxError {
    fn from(e: postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

pub(crate) type TxResult<T> = Result<T, TxError>;

impl PgStore {
    /// Connects `pool` sessions to `url` (`postgres://user@host:port/db`) and migrates the schema.
    pub fn open(url: &str, pool: usize) -> StoreResult<Self> {
        let config: Config = url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Backend(format!("database URL: {e}")))?;
        let conns = (0..pool.max(1))
            .map(|_| config.connect(NoTls).map(Mutex::new).map_err(db))
            .collect::<StoreResult<Vec<_>>>()?;
        let store = Self {
            config,
            conns,
            next: AtomicUsize::new(0),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The schema version this binary writes.
    pub fn schema_version() -> i64 {
        schema::MIGRATIONS.len() as i64
    }

    fn migrate(&self) -> StoreResult<()> {
        let supported = Self::schema_version();
        self.tx(|tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
            let found: i64 = tx
                .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
                .try_get(0)?;
            if found > supported {
                return Err(StoreError::SchemaTooNew { found, supported }.into());
            }
            for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
                tx.batch_execute(sql)?;
                tracing::info!(version = i + 1, "schema migrated");
            }
            tx.execute("DELETE FROM schema_version", &[])?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&found.max(supported)],
            )?;
            Ok(())
        })
    }

    /// A connection: an idle one if any, else waits for one; reconnects if the server closed it.
    fn conn(&self) -> StoreResult<MutexGuard<'_, Client>> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut guard = None;
        for i in 0..n {
            match self.conns[(start + i) % n].try_lock() {
                Ok(g) => guard = Some(g),
                // A panic mid-transaction dropped the transaction, which rolled it back.
                Err(TryLockError::Poisoned(p)) => guard = Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => continue,
            }
            break;
        }
        let mut guard = match guard {
            Some(g) => g,
            None => self.conns[start % n].lock().unwrap_or_else(|p| p.into_inner()),
        };
        if guard.is_closed() {
            tracing::warn!("database connection closed; reconnecting");
            *guard = self.config.connect(NoTls).map_err(db)?;
        }
        Ok(guard)
    }

    /// Runs `f` on a connection outside any explicit transaction (single statements).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Client) -> TxResult<T>) -> StoreResult<T> {
        let mut conn = self.conn()?;
        f(&mut conn).map_err(|e| match e {
            TxError::Db(e) => db(e),
            TxError::Store(e) => e,
        })
    }

    /// Runs `f` in one transaction, retried when it lost a deadlock or serialization race.
    pub(crate) fn tx<T>(&self, mut f: impl FnMut(&mut Transaction<'_>) -> TxResult<T>) -> StoreResult<T> {
        let mut conn = self.conn()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = conn.transaction().map_err(TxError::Db).and_then(|mut tx| {
                let out = f(&mut tx)?;
                tx.commit()?;
                Ok(out)
            });
            match result {
                Ok(out) => return Ok(out),
                Err(TxError::Db(e)) if retryable(&e) && attempt < RETRIES => {
                    tracing::debug!(error = %e, attempt, "transaction lost a race; retrying");
                }
                Err(TxError::Db(e)) => return Err(db(e)),
                Err(TxError::Store(e)) => return Err(e),
            }
        }
    }
}

impl Drop for PgStore {
    /// `postgres::Client` closes its session by blocking on its own runtime, which panics inside an
    /// async context (the server drops its store on a runtime thread): close them on a plain thread.
    fn drop(&mut self) {
        let conns = std::mem::take(&mut self.conns);
        if let Ok(t) = std::thread::Builder::new()
            .name("pg-close".into())
            .spawn(move || drop(conns))
        {
            let _ = t.join();
        }
    }
}
