//! A throwaway database on a shared PostgreSQL server, for tests and benchmarks: created with a
//! random name, dropped (disconnecting any session left) when the value is dropped.

use postgres::{Client, Config, NoTls};

use super::db;
use crate::store::{StoreError, StoreResult};

/// `CREATE DATABASE halyard_test_<random>` on the server of `admin_url`; dropped on drop.
#[derive(Debug)]
pub struct TempDatabase {
    admin: Config,
    name: String,
    url: String,
}

impl TempDatabase {
    /// Creates the database through `admin_url` (a URL to an existing database, e.g. `postgres`).
    pub fn create(admin_url: &str) -> StoreResult<Self> {
        let admin: Config = admin_url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Backend(format!("database URL: {e}")))?;
        let mut nonce = [0u8; 6];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Backend(e.to_string()))?;
        let name = format!("halyard_test_{}", hex::encode(nonce));
        connect(&admin)?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(db)?;
        let url = with_dbname(admin_url, &name);
        Ok(Self { admin, name, url })
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `scheme://authority/old?query` → `scheme://authority/name?query`.
fn with_dbname(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{name}{query}")
}

fn connect(config: &Config) -> StoreResult<Client> {
    config.connect(NoTls).map_err(db)
}

impl Drop for TempDatabase {
    /// On a plain thread: the blocking client must not run inside an async context.
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            connect(&admin)?
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .map_err(db)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            tracing::warn!(database = %self.name, "could not drop the temporary database");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_swapped() {
        let rows = [
            ("postgres://u@h:5432/postgres", "postgres://u@h:5432/x"),
            ("postgresql://h", "postgresql://h/x"),
            (
                "postgres://h/db?sslmode=disable",
                "postgres://h/x?sslmode=disable",
            ),
        ];
        for (url, want) in rows {
            assert_eq!(super::with_dbname(url, "x"), want);
        }
    }
}
