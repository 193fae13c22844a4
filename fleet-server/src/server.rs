//! `run(listener, shutdown, settings)`: opens the data directory (store, server key, trust root,
//! artifacts), starts the broker (embedded) or connects to an external one, the ingest path, the
//! rollout engine, and serves HTTP until `shutdown` resolves. No globals: tests run several servers
//! in one process on port 0.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify, broadcast, mpsc, watch};

use crate::app::App;
use crate::metrics::Metrics;
use crate::model::{ApiToken, Role};
use crate::settings::{BrokerSettings, Database, Settings};
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use crate::{api, broker, broker_auth, engine, mqtt, releases, secrets};

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    BrokerUrl(#[from] mqtt::BrokerUrlError),
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttSetupError),
    #[error(transparent)]
    Release(#[from] releases::ReleaseError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("server thread: {0}")]
    Runtime(String),
}

/// What a started server tells its caller (printed by the binary).
#[derive(Debug, Clone)]
pub struct Started {
    pub http: std::net::SocketAddr,
    /// `http://ADDR` or `https://ADDR`.
    pub url: String,
    pub broker: String,
    pub admin_token_file: std::path::PathBuf,
    /// A one-time enrollment token made at this start (valid 24 h), for the first device.
    pub enroll_token: String,
}

/// The admin token created on first start, kept (0600) so scripts can read it with
/// `halyard-server --print-admin-token`.
pub fn admin_token_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("admin-token")
}

fn ensure_admin_token(store: &dyn Store, dir: &Path, now: i64) -> Result<(), ServerError> {
    if store.meta("admin_token_created")?.is_some() {
        return Ok(());
    }
    let secret = secrets::new_token("hly_adm_")?;
    let info = ApiToken {
        id: secrets::token_id(&secret),
        name: "admin".into(),
        role: Role::Admin,
        created_at: now,
    };
    secrets::write_private(&admin_token_path(dir), format!("{secret}\n").as_bytes())?;
    store.put_api_token(&secrets::token_hash(&secret), &info)?;
    store.put_meta("admin_token_created", &now.to_string())?;
    Ok(())
}

/// The admin token, creating the data directory, store and token first if this is a fresh directory.
pub fn admin_token(data_dir: &Path) -> Result<String, ServerError> {
    let path = admin_token_path(data_dir);
    if !path.exists() {
        let settings = Settings::new(data_dir, BrokerSettings::External { url: String::new() });
        open_data_dir(&settings)?;
    }
    let token = std::fs::read_to_string(&path).map_err(|source| ServerError::DataDir {
        path: path.display().to_string(),
        source,
    })?;
    Ok(token.trim().to_owned())
}

fn open_data_dir(settings: &Settings) -> Result<(Arc<dyn Store>, std::path::PathBuf), ServerError> {
    let dir = &settings.data_dir;
    let artifacts = dir.join("artifacts");
    std::fs::create_dir_all(&artifacts).map_err(|source| ServerError::DataDir {
        path: artifacts.display().to_string(),
        source,
    })?;
    let store = open_store(settings)?;
    ensure_admin_token(store.as_ref(), dir, settings.clock.now())?;
    Ok((store, artifacts))
}

fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, ServerError> {
    Ok(match &settings.database {
        Database::Sqlite => Arc::new(SqliteStore::open(&settings.data_dir.join("halyard.db"))?),
        #[cfg(feature = "postgres")]
        Database::Postgres { url } => Arc::new(crate::store::postgres::PgStore::open(
            url,
            crate::store::postgres::DEFAULT_POOL,
        )?),
        #[cfg(not(feature = "postgres"))]
        Database::Postgres { .. } => {
            return Err(crate::store::StoreError::Backend(
                "this halyard-server was built without the `postgres` feature".into(),
            )
            .into());
        }
    })
}

/// A server's state without its network tasks: what [`run`] builds before it connects to the broker,
/// starts the engine and serves HTTP. The simulator's virtual-time mode drives it directly (engine
/// ticks, ingest, the `outgoing` desired messages) with an injected clock.
#[derive(Debug)]
pub struct Core {
    pub app: Arc<App>,
    /// Retained messages the engine wants published (the MQTT task's input in [`run`]).
    pub outgoing: mpsc::Receiver<crate::app::Outgoing>,
    /// Set to `true` to tell long-lived tasks and streams to end.
    pub stop: watch::Sender<bool>,
}

/// Opens the data directory (store, server key, trust root, artifacts) into a [`Core`]; devices are
/// told `public_url` for artifacts and `broker_url` for MQTT (unless the settings override them).
pub fn core(settings: Settings, public_url: String, broker_url: &str) -> Result<Core, ServerError> {
    let (store, artifacts_dir) = open_data_dir(&settings)?;
    let key = secrets::load_or_create_server_key(&settings.data_dir)?;
    let now = settings.clock.now();
    let mut trust = releases::load_root(&settings.data_dir, now)?;
    if let Some(path) = &settings.trust_root {
        let bytes = std::fs::read(path).map_err(|source| ServerError::DataDir {
            path: path.display().to_string(),
            source,
        })?;
        trust = Some(releases::install_root(
            &settings.data_dir,
            trust.as_ref(),
            &bytes,
            now,
        )?);
    }
    let broker_account = broker_auth::server_account(settings.broker_account.as_ref(), &settings.data_dir)?;
    let tls = match &settings.tls {
        Some(t) => Some(crate::tls::material(t, &settings.data_dir)?),
        None => None,
    };
    let (out_tx, outgoing) = mpsc::channel(4096);
    let (stop, stop_rx) = watch::channel(false);
    let app = Arc::new(App {
        store,
        clock: settings.clock.clone(),
        server_key_pem: secrets::public_pem(&key),
        key,
        public_url: settings.public_url.clone().unwrap_or(public_url),
        device_broker_url: settings
            .device_broker_url
            .clone()
            .unwrap_or_else(|| broker_url.to_owned()),
        broker_account,
        broker_changed: Notify::new(),
        tls,
        artifacts_dir,
        trust: RwLock::new(trust),
        device_keys: RwLock::default(),
        outgoing: out_tx,
        wake: Notify::new(),
        reports: Notify::new(),
        engine_lock: Mutex::new(Default::default()),
        leader: crate::leader::Leadership::new(),
        metrics: Metrics::default(),
        delta_jobs: tokio::sync::Semaphore::new(1),
        stopping: stop_rx,
        updates: broadcast::channel(1024).0,
        settings,
    });
    Ok(Core { app, outgoing, stop })
}

/// Starts everything, calls `on_start` once the server is ready, and serves until `shutdown`.
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    settings: Settings,
    on_start: impl FnOnce(Started),
) -> Result<(), ServerError> {
    let http = listener.local_addr().map_err(ServerError::Http)?;
    let app_slot = Arc::new(std::sync::OnceLock::new());
    let (broker_url, embedded) = match &settings.broker {
        BrokerSettings::Embedded { listen } => {
            let login = settings
                .embedded_broker_auth
                .then(|| broker_auth::login_check(app_slot.clone()));
            let addr = broker::start(*listen, login)?;
            (format!("mqtt://{addr}"), Some(addr))
        }
        BrokerSettings::External { url } => (url.clone(), None),
    };
    // MQTTS in front of the embedded broker: bound now so devices are told its real port.
    let mqtts = match (settings.mqtts, embedded, settings.tls.is_some()) {
        (Some(addr), Some(_), true) => Some(TcpListener::bind(addr).await.map_err(ServerError::Http)?),
        _ => None,
    };
    let device_broker = match &mqtts {
        Some(l) => format!("mqtts://{}", l.local_addr().map_err(ServerError::Http)?),
        None => broker_url.clone(),
    };
    let url = match settings.tls {
        Some(_) => format!("https://{http}"),
        None => format!("http://{http}"),
    };
    let Core {
        app,
        outgoing: out_rx,
        stop: stop_tx,
    } = {
        // The PostgreSQL client blocks on its own runtime: open the store off the async threads.
        let (public, broker) = (url.clone(), device_broker);
        tokio::task::spawn_blocking(move || core(settings, public, &broker))
            .await
            .map_err(|e| ServerError::Runtime(e.to_string()))??
    };
    let _ = app_slot.set(Arc::downgrade(&app));
    let stop_rx = app.stopping.clone();
    broker_auth::spawn_sync(app.clone(), stop_rx.clone());
    let (acceptor, mqtts_acceptor) = acceptors(&app)?;
    if let (Some(front), Some(backend), Some(acceptor)) = (mqtts, embedded, mqtts_acceptor) {
        let mtls = app.settings.mtls;
        crate::tls::spawn_mqtts_front(front, acceptor, backend, mtls, stop_rx.clone());
    }
    mqtt::spawn(app.clone(), &broker_url, out_rx, stop_rx.clone())?;
    tokio::spawn(crate::leader::run(app.clone(), stop_rx.clone()));
    tokio::spawn(engine::run(app.clone(), stop_rx));
    // Deltas a restart interrupted (pairs already made are skipped cheaply).
    crate::deltas::schedule_all(&app);
    let (enroll_token, _) = api::make_enroll_token(&app, None, Vec::new(), Some(24 * 3600))
        .await
        .map_err(|e| ServerError::DataDir {
            path: "enrollment token".into(),
            source: std::io::Error::other(e.message),
        })?;
    on_start(Started {
        http,
        url,
        broker: broker_url,
        admin_token_file: admin_token_path(&app.settings.data_dir),
        enroll_token,
    });
    tracing::info!(%http, "halyard-server ready");
    // Tell background tasks and open streams first, so the graceful drain does not wait on them.
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let router = api::router(app);
    let served = match acceptor {
        Some(acceptor) => {
            let tls = crate::tls::TlsListener::new(listener, acceptor).map_err(ServerError::Http)?;
            let router = router.into_make_service_with_connect_info::<crate::mtls::Peer>();
            axum::serve(tls, router).with_graceful_shutdown(shutdown).await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    served.map_err(ServerError::Http)
}

/// The HTTPS and MQTTS acceptors (when the server speaks TLS). With mutual TLS the MQTTS front
/// demands a device certificate; HTTPS asks for one but also serves enrollment and operators
/// without (the device endpoints check it per request).
fn acceptors(
    app: &App,
) -> Result<
    (
        Option<tokio_rustls::TlsAcceptor>,
        Option<tokio_rustls::TlsAcceptor>,
    ),
    ServerError,
> {
    use crate::mtls::{ClientAuth, MutualTls};
    let own_ca = app.tls.as_ref().is_some_and(|m| m.ca.is_some());
    match (&app.tls, app.settings.mtls) {
        (None, MutualTls::Off) => Ok((None, None)),
        (Some(material), MutualTls::Off) => {
            let acceptor = crate::tls::acceptor(material, ClientAuth::None)?;
            Ok((Some(acceptor.clone()), Some(acceptor)))
        }
        (Some(material), MutualTls::Required) if own_ca => Ok((
            Some(crate::tls::acceptor(material, ClientAuth::Optional)?),
            Some(crate::tls::acceptor(material, ClientAuth::Required)?),
        )),
        (_, MutualTls::Required) => Err(ServerError::Tls(crate::tls::TlsError::Pem {
            path: "--mtls".into(),
            reason: "mutual TLS needs the server's own CA (--tls auto) to issue device certificates".into(),
        })),
    }
}
