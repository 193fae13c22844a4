//! The MQTT event loop (rumqttc 0.25, MQTT 3.1.1; plain TCP, or TLS through rustls with the ring
//! provider for `mqtts://`), kept thin: one thread drives the connection,
//! subscribes to the device's `desired` topic after every ConnAck, hands arrivals to the agent over a
//! channel and sleeps a jittered backoff after each connection error. Verification and sealing are
//! in [`super::codec`]; the agent publishes through [`Mqtt::publish`].
//!
//! Presence: before every (re)connect the loop asks for a fresh pair of signed presence messages,
//! online (sequence n) and offline (n + 1). The offline one becomes the last will of that connection
//! and the online one is published after its ConnAck, so the will a broker fires is always newer than
//! the online message before it and a server's sequence check accepts both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rumqttc::{Client, Connection, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

use super::codec::{Publication, backoff};
use super::http::{CaError, read_certs};
use crate::config::MqttSettings;

/// What the connection thread reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// (Re)connected and subscribed: publish presence and the current report again.
    Connected,
    /// A message on a subscribed topic.
    Message {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
}

/// Publishing failed (the client's request channel is closed).
#[derive(Debug, thiserror::Error)]
#[error("MQTT publish on {topic}: {reason}")]
pub struct PublishError {
    /// Topic.
    pub topic: String,
    /// Why.
    pub reason: String,
}

/// A running MQTT connection.
pub struct Mqtt {
    client: Client,
    inbound: Receiver<Inbound>,
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Mqtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mqtt").finish_non_exhaustive()
    }
}

impl Mqtt {
    /// Connect as `client_id`, subscribing to `subscribe`; `presence` signs (online, offline-will)
    /// pairs, one per connection attempt.
    pub fn start(
        settings: &MqttSettings,
        client_id: &str,
        subscribe: &str,
        presence: PresenceSigner,
    ) -> Self {
        let mut options = MqttOptions::new(client_id, settings.host.clone(), settings.port);
        options
            .set_keep_alive(settings.keep_alive)
            .set_clean_session(true);
        if let Some(ca) = &settings.tls_ca {
            match tls_config(ca) {
                Ok(config) => {
                    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
                }
                // `app::run` checks the CA file before it connects; a library caller learns it here.
                Err(e) => tracing::error!(error = %e, "mqtts: no usable CA, the connection will fail"),
            }
        }
        let (client, connection) = Client::new(options, 64);
        let (tx, inbound) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            connected: connected.clone(),
            presence,
            online: None,
            client: client.clone(),
            subscribe: subscribe.to_owned(),
            tx,
            stop: stop.clone(),
            settings: settings.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || worker.run(connection))
            .ok();
        Self {
            client,
            inbound,
            stop,
            connected,
            thread,
        }
    }

    /// Whether the connection is up (a ConnAck arrived and no error since).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Queue a QoS 1 publication (sent once connected).
    pub fn publish(&self, p: Publication) -> Result<(), PublishError> {
        tracing::debug!(topic = %p.topic, retain = p.retain, bytes = p.payload.len(), "publish");
        self.client
            .publish(p.topic.clone(), QoS::AtLeastOnce, p.retain, p.payload)
            .map_err(|e| PublishError {
                topic: p.topic,
                reason: e.to_string(),
            })
    }

    /// The next arrival within `timeout`; `None` on timeout or when the thread has gone.
    pub fn recv(&self, timeout: Duration) -> Option<Inbound> {
        match self.inbound.recv_timeout(timeout) {
            Ok(inbound) => Some(inbound),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout);
                None
            }
        }
    }

    /// Disconnect cleanly (no last will) and stop the thread.
    pub fn shutdown(mut self) {
        if let Err(e) = self.client.try_disconnect() {
            tracing::debug!(error = %e, "disconnect request");
        }
        // Let the loop flush the queued publications and the DISCONNECT before stopping it.
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("mqtt thread panicked");
        }
    }
}

/// The TLS client config for `mqtts://`: rustls with the ring provider, trusting only the
/// certificates in `ca` (PEM), TLS 1.2 and 1.3, no client certificate (the device authenticates by
/// signing every message).
pub fn tls_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, CaError> {
    let fail = |reason: String| CaError {
        path: ca.to_path_buf(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots
            .add(rustls::pki_types::CertificateDer::from(cert.der().to_vec()))
            .map_err(|e| fail(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Signs a fresh (online, offline) presence pair; `None` when signing failed (logged by the signer).
pub type PresenceSigner = Box<dyn FnMut() -> Option<(Publication, Publication)> + Send>;

struct Worker {
    connected: Arc<AtomicBool>,
    presence: PresenceSigner,
    online: Option<Publication>,
    client: Client,
    subscribe: String,
    tx: Sender<Inbound>,
    stop: Arc<AtomicBool>,
    settings: MqttSettings,
}

impl Worker {
    fn run(mut self, mut connection: Connection) {
        let mut failures = 0u32;
        self.arm(&mut connection);
        while !self.stop.load(Ordering::SeqCst) {
            let event = match connection.recv_timeout(Duration::from_millis(250)) {
                Ok(event) => event,
                Err(rumqttc::RecvTimeoutError::Timeout) => continue,
                Err(rumqttc::RecvTimeoutError::Disconnected) => return,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failures = 0;
                    self.connected.store(true, Ordering::SeqCst);
                    tracing::info!(host = %self.settings.host, port = self.settings.port, "mqtt connected");
                    if let Err(e) = self
                        .client
                        .try_subscribe(self.subscribe.clone(), QoS::AtLeastOnce)
                    {
                        tracing::warn!(error = %e, "subscribe");
                    }
                    self.announce();
                    if self.tx.send(Inbound::Connected).is_err() {
                        return;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let msg = Inbound::Message {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    };
                    if self.tx.send(msg).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.connected.store(false, Ordering::SeqCst);
                    let delay = backoff(
                        failures,
                        self.settings.reconnect_min,
                        self.settings.reconnect_max,
                        noise(),
                    );
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, ?delay, failures, "mqtt connection lost, reconnecting");
                    self.sleep(delay);
                    self.arm(&mut connection);
                }
            }
        }
    }

    /// Publish this connection's online presence.
    fn announce(&mut self) {
        if let Some(p) = self.online.take()
            && let Err(e) = self
                .client
                .try_publish(p.topic, QoS::AtLeastOnce, p.retain, p.payload)
        {
            tracing::warn!(error = %e, "presence");
        }
    }

    /// Sign the presence pair for the next connection attempt and install its will.
    fn arm(&mut self, connection: &mut Connection) {
        let options = &mut connection.eventloop.mqtt_options;
        match (self.presence)() {
            Some((online, will)) => {
                options.set_last_will(LastWill::new(
                    will.topic,
                    will.payload,
                    QoS::AtLeastOnce,
                    will.retain,
                ));
                self.online = Some(online);
            }
            None => self.online = None,
        }
    }

    /// Sleep in short steps so a shutdown is not held up by a long backoff.
    fn sleep(&self, total: Duration) {
        let step = Duration::from_millis(100);
        let mut left = total;
        while !left.is_zero() && !self.stop.load(Ordering::SeqCst) {
            let now = left.min(step);
            std::thread::sleep(now);
            left -= now;
        }
    }
}

fn noise() -> u64 {
    let mut buf = [0u8; 8];
    if getrandom::fill(&mut buf).is_err() {
        return 0;
    }
    u64::from_le_bytes(buf)
}
