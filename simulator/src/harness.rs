//! Runs a real `halyard-server` in this process (its own tokio runtime on a thread, port 0, a temp or
//! given data directory) and a fleet of [`SimDevice`]s against it: the building block of scenarios,
//! the demo and the end-to-end tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use halyard_node::config::MqttSettings;
use halyard_server::background::Background;
use halyard_server::settings::{BrokerSettings, Settings};
use serde_json::Value;

use crate::control::Control;
use crate::device::{Behavior, DeviceError, SimDevice};
use crate::fleet::{self, Fleet};

/// Something in the harness failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("server: {0}")]
    Server(String),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Fleet(#[from] fleet::FleetError),
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout { what: String, secs: u64 },
}

/// A server running in this process (on its own thread and runtime).
#[derive(Debug)]
pub struct ServerHandle {
    pub http: SocketAddr,
    pub broker: String,
    pub admin_token: String,
    inner: Background,
}

impl ServerHandle {
    /// Starts a server on 127.0.0.1:0 with `settings`.
    pub fn start(settings: Settings) -> Result<Self, HarnessError> {
        let inner = Background::start(settings).map_err(|e| HarnessError::Server(e.to_string()))?;
        Ok(Self {
            http: inner.started.http,
            broker: inner.started.broker.clone(),
            admin_token: inner.admin_token.clone(),
            inner,
        })
    }

    pub fn url(&self) -> String {
        self.inner.url()
    }

    pub fn control(&self) -> Control {
        Control::new(&self.url(), &self.admin_token)
    }

    /// Graceful stop (the HTTP server drains; background tasks end).
    pub fn stop(self) {
        self.inner.stop();
    }
}

/// Settings for a test or demo server in `dir` with the embedded broker on a free port.
pub fn embedded_settings(dir: &Path) -> Settings {
    let mut s = Settings::new(
        dir,
        BrokerSettings::Embedded {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        },
    );
    s.tick = Duration::from_millis(200);
    s
}

/// One group of identical devices.
#[derive(Debug, Clone)]
pub struct Group {
    pub site: String,
    pub hardware_class: String,
    pub count: usize,
    pub behaviors: Vec<(String, Behavior)>,
}

/// Devices, their threads and the fleet's release material.
#[derive(Debug)]
pub struct Fleetline {
    pub fleet: Fleet,
    pub control: Control,
    pub devices: Vec<SimDevice>,
    threads: Vec<JoinHandle<Result<(), DeviceError>>>,
    stop: Arc<AtomicBool>,
    /// Every device's MQTT connection runs on this runtime: a socket per device, not a thread and
    /// a runtime per device (10,000 devices would need 30,000 file descriptors otherwise).
    links: tokio::runtime::Runtime,
    dir: PathBuf,
    image_len: usize,
    health: std::net::TcpListener,
    refused: SocketAddr,
}

/// Open files a real-time fleet may need: a socket per device, and during a wave a download, a
/// health-check connection and the server's end of each.
const OPEN_FILES: u64 = 65_536;

/// Raises this process's limit of open files to `wanted` where it may (the hard limit too, as
/// root), else to its hard limit; returns the limit now (`None`: unlimited).
fn raise_open_files(wanted: u64) -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let Some(hard) = now.maximum else {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted),
                maximum: None,
            },
        );
        return getrlimit(Resource::Nofile).current;
    };
    let raised = Rlimit {
        current: Some(hard.max(wanted)),
        maximum: Some(hard.max(wanted)),
    };
    if setrlimit(Resource::Nofile, raised).is_err() {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
    getrlimit(Resource::Nofile).current
}

/// The "service" that healthy images check: a loopback listener whose connections are accepted and
/// dropped. Its accept queue holds 4,096 (std's default of 128 overflows when a wave of thousands
/// checks at once, and a dropped SYN costs the 2 s check a retransmit).
fn health_service(rt: &tokio::runtime::Runtime) -> std::io::Result<std::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let listener = rt.block_on(async { socket.listen(4096) })?.into_std()?;
    listener.set_nonblocking(false)?;
    let acceptor = listener.try_clone()?;
    std::thread::spawn(move || acceptor.incoming().for_each(drop));
    Ok(listener)
}

fn refused_addr() -> Result<SocketAddr, HarnessError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| HarnessError::Server(e.to_string()))?;
    l.local_addr().map_err(|e| HarnessError::Server(e.to_string()))
}

impl Fleetline {
    /// Installs the fleet's trust root on the server and uploads the factory release.
    pub fn new(
        control: Control,
        dir: &Path,
        image_len: usize,
        factory_version: &str,
    ) -> Result<Self, HarnessError> {
        let fleet = Fleet::new(7)?;
        let _: Value = control.put_bytes("/api/v1/trust-root", fleet.root_json())?;
        let open_files = raise_open_files(OPEN_FILES);
        tracing::info!(open_files = ?open_files, "limit of open files for the fleet's sockets");
        let links = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sim-mqtt")
            .enable_all()
            .build()
            .map_err(|e| HarnessError::Server(e.to_string()))?;
        let health = health_service(&links).map_err(|e| HarnessError::Server(e.to_string()))?;
        let me = Self {
            fleet,
            control,
            devices: Vec::new(),
            threads: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            links,
            dir: dir.to_path_buf(),
            image_len,
            health,
            refused: refused_addr()?,
        };
        me.upload(factory_version, 1)?;
        Ok(me)
    }

    /// Builds, signs and uploads release `version`.
    pub fn upload(&self, version: &str, security_version: u64) -> Result<Value, HarnessError> {
        let bundle =
            self.fleet
                .full_bundle(version, security_version, &fleet::image(version, self.image_len))?;
        Ok(self.control.post_bytes("/api/v1/releases", &bundle)?)
    }

    /// Creates, enrolls and starts the devices of `group`, all on `factory_version`.
    pub fn add(&mut self, group: &Group, factory_version: &str) -> Result<(), HarnessError> {
        let healthy = self
            .health
            .local_addr()
            .map_err(|e| HarnessError::Server(e.to_string()))?;
        let plan = crate::enroll::Plan {
            control: &self.control,
            group,
            dir: &self.dir,
            image_len: self.image_len,
            factory_version,
            root: self.fleet.trusted_root()?,
            healthy,
            refused: self.refused,
        };
        for e in crate::enroll::group(&plan)? {
            let links = self.links.handle().clone();
            self.threads.push(
                e.device
                    .clone()
                    .spawn(e.mqtt, e.server_key, self.stop.clone(), links),
            );
            self.devices.push(e.device);
        }
        Ok(())
    }

    /// Polls `check` every 200 ms until it returns `Some` or `timeout` passes.
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Control) -> Result<Option<T>, HarnessError>,
    ) -> Result<T, HarnessError> {
        let start = Instant::now();
        loop {
            if let Some(v) = check(&self.control)? {
                return Ok(v);
            }
            if start.elapsed() > timeout {
                return Err(HarnessError::Timeout {
                    what: what.to_owned(),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops every device thread and returns their results.
    pub fn shutdown(&mut self) -> Vec<Result<(), DeviceError>> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .drain(..)
            .map(|t| {
                t.join().unwrap_or_else(|_| {
                    Err(DeviceError::Setup {
                        name: "thread".into(),
                        what: "join",
                        reason: "panicked".into(),
                    })
                })
            })
            .collect()
    }
}

impl Drop for Fleetline {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub(crate) fn server_key(pem: &str) -> Result<ed25519_dalek::VerifyingKey, HarnessError> {
    let key = halyard_ota::keys::PublicKey::from_pem(pem).map_err(|e| HarnessError::Server(e.to_string()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&key.to_raw()).map_err(|e| HarnessError::Server(e.to_string()))
}

/// Agent MQTT settings for a broker URL, with test-friendly timers.
pub fn mqtt_settings(url: &str) -> Result<MqttSettings, HarnessError> {
    let (host, port) =
        halyard_server::mqtt::parse_url(url).map_err(|e| HarnessError::Server(e.to_string()))?;
    Ok(MqttSettings {
        host,
        port,
        tls_ca: None,
        credentials: None,
        keep_alive: Duration::from_secs(30),
        tick: Duration::from_millis(100),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(2),
    })
}
