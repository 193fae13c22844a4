//! How a server is configured: built from flags and env vars by the binary, or directly by tests and
//! the simulator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};

/// Where the MQTT broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerSettings {
    /// Run the embedded broker (rumqttd) on this address.
    Embedded { listen: SocketAddr },
    /// Use an external broker, e.g. `mqtt://127.0.0.1:1883` (Mosquitto, EMQX).
    External { url: String },
}

/// Where the server keeps its records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Database {
    /// `halyard.db` in the data directory (one server).
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by several replicas, e.g. `postgres://halyard@db/halyard`.
    Postgres { url: String },
}

impl Database {
    /// `postgres://...` or `postgresql://...` selects PostgreSQL; `sqlite` (or empty) the default.
    pub fn from_url(url: &str) -> Result<Self, String> {
        match url {
            "" | "sqlite" => Ok(Self::Sqlite),
            u if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(Self::Postgres { url: u.to_owned() })
            }
            _ => Err(format!(
                "unsupported database URL {url:?}: expected postgres://... or sqlite"
            )),
        }
    }
}

/// Everything `run` needs besides its listener and shutdown signal.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub broker: BrokerSettings,
    pub database: Database,
    /// How long the engine lease lasts without renewal (fail-over time when a leader dies).
    pub lease_ttl: Duration,
    /// Base URL devices use to reach this server (artifact URLs); default `http://<listener address>`.
    pub public_url: Option<String>,
    /// Broker URL handed to devices at enrollment; default derived from `broker`.
    pub device_broker_url: Option<String>,
    /// A trust root to install (first start) or rotate to (later starts).
    pub trust_root: Option<PathBuf>,
    /// How often the rollout engine runs when nothing else wakes it.
    pub tick: Duration,
    /// Largest release bundle accepted on upload.
    pub max_bundle_bytes: u64,
    /// Compute server-side deltas for releases.
    pub deltas: bool,
    pub clock: Arc<dyn Clock>,
}

impl Settings {
    /// Defaults for a data directory and a broker.
    pub fn new(data_dir: impl Into<PathBuf>, broker: BrokerSettings) -> Self {
        Self {
            data_dir: data_dir.into(),
            broker,
            database: Database::Sqlite,
            lease_ttl: Duration::from_secs(10),
            public_url: None,
            device_broker_url: None,
            trust_root: None,
            tick: Duration::from_secs(1),
            max_bundle_bytes: 8 << 30,
            deltas: true,
            clock: Arc::new(SystemClock),
        }
    }
}
