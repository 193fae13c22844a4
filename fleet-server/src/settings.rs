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

/// The server's own MQTT account (username and password).
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerAccount {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for BrokerAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAccount")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Keep a Mosquitto `password_file` and `acl_file` in `dir` current: rewritten at start and after
/// every enrollment, then Mosquitto (the pid in `pid_file`) is sent SIGHUP to re-read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MosquittoSync {
    pub dir: PathBuf,
    pub pid_file: Option<PathBuf>,
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
    /// The server's own MQTT account; `None`: user `halyard-server` with a random password kept in
    /// `broker-password` in the data directory (made on first start). Replicas share one account.
    pub broker_account: Option<BrokerAccount>,
    /// The embedded broker accepts only the server's account and enrolled devices' credentials
    /// (rumqttd has no topic ACLs: this authenticates, it does not confine).
    pub embedded_broker_auth: bool,
    /// Write Mosquitto's password and ACL files for the per-device credentials (see `broker_auth`).
    pub mosquitto: Option<MosquittoSync>,
    /// Issue each device an MQTT password at enrollment (default). Off only where no broker asks
    /// devices for one: the simulator's in-process broker in virtual time. A device enrolled
    /// without one has no broker credential to export or check.
    pub broker_credentials: bool,
    /// Serve the device and operator HTTP API over TLS (and, with `mqtts` and the embedded broker,
    /// MQTT too); `None` = plain HTTP.
    pub tls: Option<crate::tls::TlsSettings>,
    /// With `tls` and the embedded broker: listen for MQTTS here (devices are told `mqtts://`).
    pub mqtts: Option<SocketAddr>,
    /// With an external broker: subscribe to device topics as this shared-subscription group
    /// (`$share/<group>/halyard/v1/devices/+/report`, ...), so the broker hands each message to one
    /// replica of the group instead of every replica. `None`: every replica gets every message.
    pub mqtt_shared_group: Option<String>,
    /// With an external `mqtts://` broker: the CA certificates (PEM) trusted for its certificate, the
    /// only ones (a private CA, or the system bundle for a broker with a public certificate).
    pub broker_ca: Option<PathBuf>,
    /// Mutual TLS: devices present the client certificate issued at enrollment (needs the server's
    /// own CA, `TlsSettings::SelfSigned`).
    pub mtls: crate::mtls::MutualTls,
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
            broker_account: None,
            mosquitto: None,
            broker_credentials: true,
            embedded_broker_auth: false,
            tls: None,
            mqtts: None,
            mtls: crate::mtls::MutualTls::Off,
            mqtt_shared_group: None,
            broker_ca: None,
            trust_root: None,
            tick: Duration::from_secs(1),
            max_bundle_bytes: 8 << 30,
            deltas: true,
            clock: Arc::new(SystemClock),
        }
    }
}
