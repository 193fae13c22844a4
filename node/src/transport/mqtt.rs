//! The MQTT event loop (rumqttc 0.25, MQTT 3.1.1; plain TCP, or TLS through rustls with the ring
//! provider for `mqtts://`), kept thin: one task drives the connection,
//! subscribes to the device's `desired` topic after every ConnAck, hands arrivals to the agent over a
//! channel and sleeps a jittered backoff after each connection error. Verification and sealing are
//! in [`super::codec`]; the agent publishes through [`Mqtt::publish`].
//!
//! The task runs on a small current-thread runtime of its own thread ([`Mqtt::start`], the agent) or
//! on a runtime the caller shares between many connections ([`Mqtt::start_on`], the simulator: one
//! socket per device instead of a socket, an epoll and an eventfd, and no thread per connection).
//!
//! Presence: before every (re)connect the loop asks for a fresh pair of signed presence messages,
//! online (sequence n) and offline (n + 1). The offline one becomes the last will of that connection
//! and the online one is published after its ConnAck, so the will a broker fires is always newer than
//! the online message before it and a server's sequence check accepts both.
//!
//! Delivery across a drop: every connection starts a clean session. When a live connection drops,
//! rumqttc sets the publications in flight (written, not acknowledged) and those still in its request
//! channel aside in `EventLoop::pending`, but empties that list when the next ConnAck starts a clean
//! session; so the task takes them first (`Worker::carry`) and hands them back once the next
//! ConnAck is in, ahead of anything published meanwhile, as fast as the in-flight window allows
//! (`Worker::feed`). At least once: one the broker had already taken
//! arrives twice, which the server's sequence rules make harmless (`docs/protocol.md`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ClientError, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
    QoS, Request, TlsConfiguration, Transport, valid_topic,
};
use tokio::runtime::Handle;

use super::codec::{Publication, backoff};
use super::http::{CaError, read_certs};
use crate::client_cert::ClientIdentity;
use crate::config::MqttSettings;

/// Publications carried over dropped connections, at most (beyond it the oldest go, with a warning):
/// four request channels' worth, only reached when connections keep dropping before their first acks.
const CARRY_MAX: usize = 256;

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
    client: AsyncClient,
    inbound: Receiver<Inbound>,
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
    /// The runtime the connection task runs on (for a publish that must wait for queue space).
    handle: Option<Handle>,
    /// Closed when the connection task has ended.
    done: Receiver<()>,
}

impl std::fmt::Debug for Mqtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mqtt").finish_non_exhaustive()
    }
}

impl Mqtt {
    /// Connect as `client_id`, subscribing to `subscribe`; `presence` signs (online, offline-will)
    /// pairs, one per connection attempt. The connection runs on a thread of its own.
    pub fn start(
        settings: &MqttSettings,
        client_id: &str,
        subscribe: &str,
        presence: PresenceSigner,
    ) -> Self {
        Self::start_on(settings, client_id, subscribe, presence, None)
    }

    /// As [`Mqtt::start`], on the shared runtime `shared` when given (it must have I/O and time
    /// enabled); otherwise on a thread with a current-thread runtime of its own.
    pub fn start_on(
        settings: &MqttSettings,
        client_id: &str,
        subscribe: &str,
        presence: PresenceSigner,
        shared: Option<Handle>,
    ) -> Self {
        Self::start_with_cert(settings, None, client_id, subscribe, presence, shared)
    }

    /// As [`Mqtt::start_on`], presenting the client certificate `client` over `mqtts://` (mutual TLS).
    pub fn start_with_cert(
        settings: &MqttSettings,
        client: Option<&ClientIdentity>,
        client_id: &str,
        subscribe: &str,
        presence: PresenceSigner,
        shared: Option<Handle>,
    ) -> Self {
        let (client, eventloop) = AsyncClient::new(options(settings, client, client_id), 64);
        let (tx, inbound) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            connected: connected.clone(),
            presence,
            online: None,
            carried: VecDeque::new(),
            client: client.clone(),
            subscribe: subscribe.to_owned(),
            tx,
            stop: stop.clone(),
            settings: settings.clone(),
            _done: done_tx,
        };
        let handle = match shared {
            Some(handle) => {
                handle.spawn(worker.run(eventloop));
                Some(handle)
            }
            None => own_thread(worker, eventloop),
        };
        Self {
            client,
            inbound,
            stop,
            connected,
            handle,
            done,
        }
    }

    /// Whether the connection is up (a ConnAck arrived and no error since).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Queue a QoS 1 publication (sent once connected); waits while the queue is full.
    pub fn publish(&self, p: Publication) -> Result<(), PublishError> {
        tracing::debug!(topic = %p.topic, retain = p.retain, bytes = p.payload.len(), "publish");
        let queued = match self
            .client
            .try_publish(p.topic, QoS::AtLeastOnce, p.retain, p.payload)
        {
            // The queue is full (a long outage): take the request back and wait for room, as a
            // blocking client would. (An invalid topic comes back the same way: not retried.)
            Err(ClientError::TryRequest(Request::Publish(back))) if valid_topic(&back.topic) => {
                match &self.handle {
                    Some(handle) => handle.block_on(self.client.publish_bytes(
                        back.topic,
                        QoS::AtLeastOnce,
                        back.retain,
                        back.payload,
                    )),
                    None => Err(ClientError::TryRequest(Request::Publish(back))),
                }
            }
            other => other,
        };
        queued.map_err(publish_error)
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

    /// Disconnect cleanly (no last will) after the queued publications, and stop the task.
    pub fn shutdown(self) {
        if let Err(e) = self.client.try_disconnect() {
            tracing::debug!(error = %e, "disconnect request");
        }
        // The task ends once its DISCONNECT is written (or at once when not connected).
        let started = std::time::Instant::now();
        let _ = self.done.recv_timeout(Duration::from_millis(500));
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.done.recv_timeout(Duration::from_secs(2));
        // Give the broker time to close this session before the next one with the same client id
        // (a reboot reconnects at once), as the agent did before the task rewrite.
        std::thread::sleep(Duration::from_millis(200).saturating_sub(started.elapsed()));
    }
}

fn options(settings: &MqttSettings, client: Option<&ClientIdentity>, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, settings.host.clone(), settings.port);
    options
        .set_keep_alive(settings.keep_alive)
        .set_clean_session(true);
    if let Some(c) = &settings.credentials {
        options.set_credentials(c.username.clone(), c.password.clone());
    }
    if let Some(ca) = &settings.tls_ca {
        match tls_config_with_cert(ca, client) {
            Ok(config) => {
                options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
            }
            // `app::run` checks the CA file before it connects; a library caller learns it here.
            Err(e) => tracing::error!(error = %e, "mqtts: no usable CA, the connection will fail"),
        }
    }
    options
}

/// Runs the connection task on a thread with its own current-thread runtime; returns that
/// runtime's handle (`None` when the runtime or the thread could not be made: logged, and the
/// connection then never comes up, which the agent treats as a broker outage).
/// The error for a publication the client handed back (it carries the topic).
fn publish_error(e: ClientError) -> PublishError {
    let reason = e.to_string();
    let topic = match e {
        ClientError::Request(Request::Publish(p)) | ClientError::TryRequest(Request::Publish(p)) => p.topic,
        ClientError::Request(_) | ClientError::TryRequest(_) => String::new(),
    };
    PublishError { topic, reason }
}

fn own_thread(worker: Worker, eventloop: EventLoop) -> Option<Handle> {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "mqtt runtime");
            return None;
        }
    };
    let handle = rt.handle().clone();
    let spawned = std::thread::Builder::new()
        .name("mqtt".into())
        .spawn(move || rt.block_on(worker.run(eventloop)));
    match spawned {
        Ok(_) => Some(handle),
        Err(e) => {
            tracing::error!(error = %e, "mqtt thread");
            None
        }
    }
}

/// The TLS client config for `mqtts://`: rustls with the ring provider, trusting only the
/// certificates in `ca` (PEM), TLS 1.2 and 1.3, no client certificate (the device authenticates by
/// signing every message).
pub fn tls_config(ca: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, CaError> {
    tls_config_with_cert(ca, None)
}

/// As [`tls_config`], presenting `client` (the certificate issued at enrollment) when given.
pub fn tls_config_with_cert(
    ca: &std::path::Path,
    client: Option<&ClientIdentity>,
) -> Result<Arc<rustls::ClientConfig>, CaError> {
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
        .with_root_certificates(roots);
    let config = match client {
        Some(client) => {
            let (chain, key) = client.for_rustls()?;
            config
                .with_client_auth_cert(chain, key)
                .map_err(|e| fail(format!("client certificate: {e}")))?
        }
        None => config.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Signs a fresh (online, offline) presence pair; `None` when signing failed (logged by the signer).
pub type PresenceSigner = Box<dyn FnMut() -> Option<(Publication, Publication)> + Send>;

struct Worker {
    connected: Arc<AtomicBool>,
    presence: PresenceSigner,
    online: Option<Publication>,
    /// What drops left unacknowledged, to hand back to rumqttc once connected.
    carried: VecDeque<Request>,
    client: AsyncClient,
    subscribe: String,
    tx: Sender<Inbound>,
    stop: Arc<AtomicBool>,
    settings: MqttSettings,
    /// Dropped when the task ends, which [`Mqtt::shutdown`] waits for.
    _done: Sender<()>,
}

impl Worker {
    async fn run(mut self, mut eventloop: EventLoop) {
        let mut failures = 0u32;
        self.arm(&mut eventloop);
        while !self.stop.load(Ordering::SeqCst) {
            self.feed(&mut eventloop);
            let event = match tokio::time::timeout(Duration::from_millis(250), eventloop.poll()).await {
                Ok(event) => event,
                Err(_elapsed) => continue,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failures = 0;
                    if !self.on_connected() {
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
                // Our DISCONNECT is on the wire: a clean end, no reconnect, no will.
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(ConnectionError::RequestsDone) => return,
                Ok(_) => {}
                Err(e) => {
                    self.connected.store(false, Ordering::SeqCst);
                    self.carry(&mut eventloop.pending);
                    let delay = backoff(
                        failures,
                        self.settings.reconnect_min,
                        self.settings.reconnect_max,
                        noise(),
                    );
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, ?delay, failures, "mqtt connection lost, reconnecting");
                    sleep(&self.stop.clone(), delay).await;
                    self.arm(&mut eventloop);
                }
            }
        }
    }

    /// Take what rumqttc set aside when the connection dropped (its `pending`: publications in flight,
    /// then those still in the request channel), before the next clean session throws it away. They go
    /// out again as new publications (fresh packet ids, no DUP flag: the old session is gone).
    fn carry(&mut self, pending: &mut VecDeque<Request>) {
        for request in pending.drain(..) {
            match request {
                Request::Publish(mut p) => {
                    p.pkid = 0;
                    p.dup = false;
                    self.carried.push_back(Request::Publish(p));
                }
                Request::Disconnect(d) => self.carried.push_back(Request::Disconnect(d)),
                // Subscriptions are made afresh after every ConnAck; acks and releases belong to the
                // old session.
                _ => {}
            }
        }
        let over = self.carried.len().saturating_sub(CARRY_MAX);
        if over > 0 {
            self.carried.drain(..over);
            tracing::warn!(
                dropped = over,
                kept = CARRY_MAX,
                "mqtt: dropped the oldest unsent publications"
            );
        }
    }

    /// While connected, hand carried requests back to rumqttc's `pending`, first out, in order. That
    /// list skips the in-flight window, so it gets no more than the window has room for (more would
    /// reuse packet ids still in flight); rumqttc reads its request channel only when `pending` is empty
    /// and the window has room, and then this refills `pending` first: nothing newer overtakes.
    fn feed(&mut self, eventloop: &mut EventLoop) {
        if self.carried.is_empty() || !self.connected.load(Ordering::SeqCst) {
            return;
        }
        let window = usize::from(eventloop.mqtt_options.inflight());
        let busy = usize::from(eventloop.state.inflight()) + eventloop.pending.len();
        let room = window.saturating_sub(busy).min(self.carried.len());
        eventloop.pending.extend(self.carried.drain(..room));
    }

    /// Subscribe and announce after a ConnAck; `false` when the agent has gone.
    fn on_connected(&mut self) -> bool {
        self.connected.store(true, Ordering::SeqCst);
        tracing::info!(host = %self.settings.host, port = self.settings.port, "mqtt connected");
        if let Err(e) = self
            .client
            .try_subscribe(self.subscribe.clone(), QoS::AtLeastOnce)
        {
            tracing::warn!(error = %e, "subscribe");
        }
        self.announce();
        self.tx.send(Inbound::Connected).is_ok()
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
    fn arm(&mut self, eventloop: &mut EventLoop) {
        let options = &mut eventloop.mqtt_options;
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
}

/// Sleep in short steps so a shutdown is not held up by a long backoff.
async fn sleep(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(100);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::SeqCst) {
        let now = left.min(step);
        tokio::time::sleep(now).await;
        left -= now;
    }
}

fn noise() -> u64 {
    let mut buf = [0u8; 8];
    if getrandom::fill(&mut buf).is_err() {
        return 0;
    }
    u64::from_le_bytes(buf)
}
