//! The real `halyard-server` core (store, ingest path, rollout engine, signed desired states, HTTP
//! API) on its own tokio runtime, driven by the world loop in virtual time: the loop decides when the
//! engine runs and which device messages arrive, instead of a broker connection and a ticker. The
//! operator API is served on a loopback port, so scenarios drive it exactly as operators do.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use halyard_protocol::Topic;
use halyard_server::app::{App, Outgoing};
use halyard_server::settings::{BrokerSettings, Settings};

use super::clock::VirtualTime;
use crate::control::Control;

/// A topic no device uses: marks the end of one engine step's messages.
const END_OF_STEP: &str = "halyard-sim/end-of-step";

/// The server could not start or failed.
#[derive(Debug, thiserror::Error)]
#[error("virtual server: {0}")]
pub struct VServerError(pub String);

fn err(e: impl std::fmt::Display) -> VServerError {
    VServerError(e.to_string())
}

/// Device messages of one instant, with that instant (the time they reached the server).
type Arrivals = (Vec<(String, Vec<u8>)>, i64);

/// A server core in virtual time.
#[derive(Debug)]
pub struct VServer {
    rt: tokio::runtime::Runtime,
    pub app: Arc<App>,
    published: std::sync::mpsc::Receiver<Outgoing>,
    /// Batches for the ingest task, which takes them one after another, in order.
    arrivals: tokio::sync::mpsc::UnboundedSender<Arrivals>,
    /// How many messages of each batch the ingest task refused, in the batches' order.
    ingested: std::sync::mpsc::Receiver<usize>,
    /// Batches sent to the ingest task and not yet collected.
    in_flight: std::cell::Cell<usize>,
    stop: tokio::sync::watch::Sender<bool>,
    pub http: SocketAddr,
    pub admin_token: String,
}

impl VServer {
    /// Opens (or reopens, after a crash) the server in `dir` on `clock`.
    pub fn start(dir: &Path, clock: VirtualTime) -> Result<Self, VServerError> {
        let mut settings = Settings::new(
            dir,
            BrokerSettings::External {
                url: "mqtt://127.0.0.1:1883".into(),
            },
        );
        settings.clock = Arc::new(clock);
        settings.deltas = false;
        // Messages reach the server in-process: no broker asks devices for a password.
        settings.broker_credentials = false;
        // One server: it takes the engine lease at once; a long lease keeps the term from lapsing
        // between two real-time renewals on a busy machine (a skipped engine pass would break
        // determinism).
        settings.lease_ttl = std::time::Duration::from_secs(3600);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(err)?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
        let http = std_listener.local_addr().map_err(err)?;
        std_listener.set_nonblocking(true).map_err(err)?;
        let core = halyard_server::server::core(settings, format!("http://{http}"), "mqtt://127.0.0.1:1883")
            .map_err(err)?;
        let (tx, published) = std::sync::mpsc::channel();
        let mut outgoing = core.outgoing;
        let app = core.app;
        let (arrivals, ingested) = ingest_task(&rt, app.clone());
        let router = halyard_server::api::router(app.clone());
        let mut stopping = app.stopping.clone();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::from_std(std_listener).map_err(err)?;
            tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stopping.wait_for(|s| *s).await;
                    })
                    .await;
            });
            tokio::spawn(halyard_server::leader::run(app.clone(), app.stopping.clone()));
            tokio::spawn(async move {
                while let Some(m) = outgoing.recv().await {
                    if tx.send(m).is_err() {
                        break;
                    }
                }
            });
            Ok::<_, VServerError>(())
        })?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while app.leader.epoch().is_none() {
            if std::time::Instant::now() > deadline {
                return Err(VServerError(
                    "the engine lease was not granted within 30 s".into(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let admin_token = halyard_server::server::admin_token(dir).map_err(err)?;
        Ok(Self {
            rt,
            app,
            published,
            arrivals,
            ingested,
            in_flight: std::cell::Cell::new(0),
            stop: core.stop,
            http,
            admin_token,
        })
    }

    pub fn control(&self) -> Control {
        Control::new(&format!("http://{}", self.http), &self.admin_token)
    }

    /// Hands device messages that reached the server at `now` to the ingest task, which verifies and
    /// stores them (as the MQTT ingest worker does) while the world goes on: nothing a device does
    /// depends on the store. Batches are taken in the order they are sent; [`VServer::settle`] waits
    /// for them.
    pub fn send(&self, messages: Vec<(String, Vec<u8>)>, now: i64) -> Result<(), VServerError> {
        self.arrivals
            .send((messages, now))
            .map_err(|_| VServerError("the ingest task stopped".into()))?;
        self.in_flight.set(self.in_flight.get() + 1);
        Ok(())
    }

    /// Waits until every batch sent is stored; returns how many messages were refused.
    pub fn settle(&self) -> Result<usize, VServerError> {
        let mut refused = 0;
        while self.in_flight.get() > 0 {
            refused += self
                .ingested
                .recv()
                .map_err(|_| VServerError("the ingest task stopped".into()))?;
            self.in_flight.set(self.in_flight.get() - 1);
        }
        Ok(refused)
    }

    /// Ingests messages now and waits for them; returns how many earlier and these were refused.
    pub fn ingest(&self, messages: Vec<(String, Vec<u8>)>, now: i64) -> Result<usize, VServerError> {
        self.send(messages, now)?;
        self.settle()
    }

    /// One rollout engine pass; returns the desired states it published, in order.
    pub fn engine_step(&self) -> Result<Vec<Outgoing>, VServerError> {
        let app = self.app.clone();
        self.rt.block_on(async move {
            halyard_server::engine::tick(&app).await.map_err(err)?;
            let end = Outgoing {
                topic: END_OF_STEP.into(),
                payload: Vec::new(),
            };
            app.outgoing.send(end).await.map_err(err)
        })?;
        let mut out = Vec::new();
        loop {
            let m = self.published.recv().map_err(err)?;
            if m.topic == END_OF_STEP {
                return Ok(out);
            }
            out.push(m);
        }
    }

    /// Every device's current desired state, as the server republishes them on a broker connect.
    pub fn retained(&self) -> Result<Vec<Outgoing>, VServerError> {
        let app = self.app.clone();
        self.rt.block_on(async move {
            let all = app.db(|s| s.all_desired()).await.map_err(err)?;
            Ok(all
                .into_iter()
                .map(|d| Outgoing {
                    topic: Topic::Desired.for_device(&d.device),
                    payload: d.envelope.into_bytes(),
                })
                .collect())
        })
    }

    /// Graceful stop.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        self.rt.shutdown_timeout(std::time::Duration::from_secs(5));
    }

    /// The process dies at once: no drain, no goodbye; only what the store committed survives.
    pub fn crash(self) {
        self.rt.shutdown_background();
    }
}

/// Most messages the ingest task takes at once: batches that queued up while it worked are verified
/// and stored together (one transaction) until they hold this many.
const INGEST_MAX: usize = 2000;

/// The ingest task: takes batches in order, with whatever queued behind them (up to [`INGEST_MAX`]
/// messages, each batch keeping the time it arrived), and answers each batch with its refusals.
fn ingest_task(
    rt: &tokio::runtime::Runtime,
    app: Arc<App>,
) -> (
    tokio::sync::mpsc::UnboundedSender<Arrivals>,
    std::sync::mpsc::Receiver<usize>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Arrivals>();
    let (done, ingested) = std::sync::mpsc::channel();
    rt.spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut taken = vec![first];
            let mut count = taken[0].0.len();
            while count < INGEST_MAX {
                match rx.try_recv() {
                    Ok(next) => {
                        count += next.0.len();
                        taken.push(next);
                    }
                    Err(_) => break,
                }
            }
            for refused in ingest(&app, taken).await {
                if done.send(refused).is_err() {
                    return;
                }
            }
        }
    });
    (tx, ingested)
}

/// Ingests batches in order; how many messages of each were refused (bad topics included).
async fn ingest(app: &App, batches: Vec<Arrivals>) -> Vec<usize> {
    let mut refused = vec![0; batches.len()];
    let mut groups = Vec::with_capacity(batches.len());
    for (b, (messages, now)) in batches.into_iter().enumerate() {
        let mut raw = Vec::with_capacity(messages.len());
        for (topic, payload) in messages {
            match Topic::parse(&topic) {
                Some((device, topic)) => raw.push((device, topic, payload)),
                None => refused[b] += 1,
            }
        }
        groups.push((raw, now));
    }
    let taken = halyard_server::ingest::take_batches(app, groups).await;
    for (r, t) in refused.iter_mut().zip(taken) {
        *r += t.refused + t.replays;
    }
    refused
}
