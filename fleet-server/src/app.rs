//! The shared state of a running server ([`App`]) and the bridge from async handlers to the
//! synchronous [`Store`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ed25519_dalek::{SigningKey, VerifyingKey};
use halyard_ota::root::TrustedRoot;
use halyard_protocol::DeviceId;
use tokio::sync::{Mutex, Notify, broadcast, mpsc};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::store::{Store, StoreError, StoreResult};

/// A retained message for the MQTT task to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Everything request handlers and background tasks share.
#[derive(Debug)]
pub struct App {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub key: SigningKey,
    pub server_key_pem: String,
    pub public_url: String,
    pub device_broker_url: String,
    /// The server's own MQTT account (see `broker_auth`).
    pub broker_account: crate::settings::BrokerAccount,
    /// Certificate material when the server speaks TLS (its CA goes to devices at enrollment).
    pub tls: Option<crate::tls::Material>,
    /// A device credential changed: the Mosquitto files need rewriting (`broker_auth::spawn_sync`).
    pub broker_changed: Notify,
    pub artifacts_dir: PathBuf,
    pub settings: Settings,
    pub trust: RwLock<Option<TrustedRoot>>,
    pub device_keys: RwLock<HashMap<DeviceId, VerifyingKey>>,
    pub outgoing: mpsc::Sender<Outgoing>,
    /// Wakes the rollout engine now (a rollout was created or commanded, a site changed).
    pub wake: Notify,
    /// Wakes the rollout engine after device messages; coalesced to one pass per tick.
    pub reports: Notify,
    /// Serializes engine steps and operator commands on rollouts, and holds the engine's fleet view
    /// between them.
    pub engine_lock: Mutex<crate::desired::FleetView>,
    /// Whether this replica runs the rollout engine now.
    pub leader: crate::leader::Leadership,
    pub metrics: Metrics,
    /// Bounds server-side delta jobs to one at a time (each holds two images in memory).
    pub delta_jobs: tokio::sync::Semaphore,
    /// Turns true when the server shuts down (long-lived responses such as SSE end then).
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Change notices for live views (SSE): a short JSON text per change.
    pub updates: broadcast::Sender<String>,
}

impl App {
    /// Runs `f` against the store on the blocking pool.
    pub async fn db<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Tells live views that something changed.
    pub fn notify(&self, what: &str, id: &str) {
        if self.updates.receiver_count() == 0 {
            // Nobody is watching: do not build a message per ingested device message.
            return;
        }
        let _ = self
            .updates
            .send(serde_json::json!({"kind": what, "id": id}).to_string());
    }

    /// The URL devices download an artifact from.
    pub fn artifact_url(&self, sha256: &str) -> String {
        format!("{}/v1/artifacts/{sha256}", self.public_url.trim_end_matches('/'))
    }
}
