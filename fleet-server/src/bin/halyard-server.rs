//! `halyard-server`: flags (each with an env-var twin) → settings → `halyard_server::server::run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use halyard_server::server::{self, Started};
use halyard_server::settings::{BrokerAccount, BrokerSettings, Database, MosquittoSync, Settings};
use halyard_server::tls::TlsSettings;

/// The Halyard fleet server: device API, MQTT ingest, rollout engine, operator API.
///
/// With no flags it runs an embedded MQTT broker and SQLite in ./halyard-data.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where the database, keys, trust root and artifacts live (created if missing).
    #[arg(long, env = "HALYARD_DATA_DIR", default_value = "halyard-data")]
    data_dir: PathBuf,
    /// Address of the HTTP API, device endpoints and dashboard.
    #[arg(long, env = "HALYARD_HTTP", default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Address of the embedded MQTT broker (1884 by default, so a system Mosquitto on 1883 can stay).
    #[arg(
        long,
        env = "HALYARD_MQTT",
        default_value = "127.0.0.1:1884",
        conflicts_with = "broker"
    )]
    mqtt: SocketAddr,
    /// The embedded broker accepts only enrolled devices' credentials and the server's own account
    /// (authentication only: rumqttd has no topic ACLs; use Mosquitto for those).
    #[arg(long, env = "HALYARD_MQTT_AUTH", conflicts_with = "broker")]
    mqtt_auth: bool,
    /// Use this external broker instead of the embedded one, e.g. mqtt://127.0.0.1:1883.
    #[arg(long, env = "HALYARD_BROKER")]
    broker: Option<String>,
    /// Base URL devices reach this server at (artifact URLs); default http://<--http>.
    #[arg(long, env = "HALYARD_PUBLIC_URL")]
    public_url: Option<String>,
    /// Broker URL given to devices at enrollment; default the broker's own address.
    #[arg(long, env = "HALYARD_DEVICE_BROKER_URL")]
    device_broker_url: Option<String>,
    /// Install (first start) or rotate to this trust root (root.json).
    #[arg(long, env = "HALYARD_TRUST_ROOT")]
    trust_root: Option<PathBuf>,
    /// Keep records in PostgreSQL (postgres://user@host/db) instead of SQLite in the data directory;
    /// several replicas may share one database (the rollout engine runs on one of them at a time).
    #[arg(long, env = "HALYARD_DATABASE_URL")]
    database_url: Option<String>,
    /// Seconds the rollout-engine lease lasts unrenewed: how soon another replica takes over.
    #[arg(long, env = "HALYARD_LEASE_TTL_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    lease_ttl_secs: u64,
    /// The server's own MQTT username (an external broker with per-device credentials).
    #[arg(long, env = "HALYARD_BROKER_USER", default_value = "halyard-server")]
    broker_user: String,
    /// File holding the server's MQTT password; default `broker-password` in the data directory,
    /// created on first start. Replicas on one database share one file (a Kubernetes Secret).
    #[arg(long, env = "HALYARD_BROKER_PASSWORD_FILE")]
    broker_password_file: Option<PathBuf>,
    /// Keep Mosquitto's password_file and acl_file in this directory current (every enrollment).
    #[arg(long, env = "HALYARD_MOSQUITTO_DIR")]
    mosquitto_dir: Option<PathBuf>,
    /// Send SIGHUP to the Mosquitto whose pid is in this file after rewriting them.
    #[arg(long, env = "HALYARD_MOSQUITTO_PID_FILE", requires = "mosquitto_dir")]
    mosquitto_pid_file: Option<PathBuf>,
    /// HTTPS (and MQTTS for the embedded broker): `off`; `auto` = a fleet CA made on first start in
    /// <data-dir>/tls/ and a server certificate for --tls-names, the CA handed to devices at
    /// enrollment; or `CERT.pem+KEY.pem` for your own certificate (see --tls-ca).
    #[arg(long, env = "HALYARD_TLS", default_value = "off")]
    tls: String,
    /// Names (DNS or IP) for the `auto` server certificate, comma-separated. Default: localhost,
    /// 127.0.0.1 and the --http address.
    #[arg(long, env = "HALYARD_TLS_NAMES", value_delimiter = ',')]
    tls_names: Vec<String>,
    /// With `--tls CERT+KEY`: the CA certificate (PEM) handed to devices at enrollment to pin.
    #[arg(long, env = "HALYARD_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// With TLS and the embedded broker: where devices connect with MQTTS.
    #[arg(long, env = "HALYARD_MQTTS", default_value = "127.0.0.1:8884")]
    mqtts: SocketAddr,
    /// With `--broker`: subscribe to device messages as this shared-subscription group
    /// (`$share/GROUP/...`), so the broker gives each message to one replica of the group.
    #[arg(long, env = "HALYARD_MQTT_SHARED_GROUP")]
    mqtt_shared_group: Option<String>,
    /// With `--broker mqtts://...`: the CA certificates (PEM) to trust for the broker's certificate
    /// (a private CA, or /etc/ssl/certs/ca-certificates.crt for a public one).
    #[arg(long, env = "HALYARD_MQTT_CA_FILE", requires = "broker")]
    mqtt_ca_file: Option<PathBuf>,
    /// Mutual TLS (needs `--tls auto`): devices present the client certificate issued at enrollment
    /// on MQTTS and on the device HTTP endpoints, and may act only for their own device id.
    #[arg(long, env = "HALYARD_MTLS")]
    mtls: bool,
    /// Print the admin token created on first start and exit.
    #[arg(long)]
    print_admin_token: bool,
}

fn settings(args: &Args) -> anyhow::Result<Settings> {
    let broker = match &args.broker {
        Some(url) => BrokerSettings::External { url: url.clone() },
        None => BrokerSettings::Embedded { listen: args.mqtt },
    };
    let mut s = Settings::new(&args.data_dir, broker);
    s.public_url = args.public_url.clone();
    s.device_broker_url = args.device_broker_url.clone();
    s.trust_root = args.trust_root.clone();
    if let Some(url) = &args.database_url {
        s.database = Database::from_url(url).map_err(anyhow::Error::msg)?;
    }
    s.lease_ttl = std::time::Duration::from_secs(args.lease_ttl_secs);
    s.embedded_broker_auth = args.mqtt_auth;
    s.broker_account = match &args.broker_password_file {
        Some(path) => Some(BrokerAccount {
            user: args.broker_user.clone(),
            password: std::fs::read_to_string(path)
                .with_context(|| format!("broker password file {}", path.display()))?
                .trim()
                .to_owned(),
        }),
        None if args.broker_user != halyard_server::broker_auth::DEFAULT_SERVER_USER => {
            anyhow::bail!("--broker-user needs --broker-password-file")
        }
        None => None,
    };
    s.tls = tls_settings(args)?;
    s.mqtts = Some(args.mqtts);
    s.mqtt_shared_group = args.mqtt_shared_group.clone();
    s.broker_ca = args.mqtt_ca_file.clone();
    if args.mtls {
        anyhow::ensure!(
            args.tls == "auto",
            "--mtls needs --tls auto (the fleet CA signs device certificates)"
        );
        s.mtls = halyard_server::mtls::MutualTls::Required;
    }
    s.mosquitto = args.mosquitto_dir.clone().map(|dir| MosquittoSync {
        dir,
        pid_file: args.mosquitto_pid_file.clone(),
    });
    Ok(s)
}

fn tls_settings(args: &Args) -> anyhow::Result<Option<TlsSettings>> {
    match args.tls.as_str() {
        "off" | "" => return Ok(None),
        "auto" => {}
        files => {
            let Some((cert, key)) = files.split_once('+') else {
                anyhow::bail!("--tls {files:?}: expected off, auto or CERT.pem+KEY.pem");
            };
            return Ok(Some(TlsSettings::Files {
                cert: cert.into(),
                key: key.into(),
                ca: args.tls_ca.clone(),
            }));
        }
    }
    let mut names = args.tls_names.clone();
    if names.is_empty() {
        names = vec!["localhost".into(), "127.0.0.1".into()];
        let ip = args.http.ip();
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    Ok(Some(TlsSettings::SelfSigned { names }))
}

fn print_started(s: &Started) {
    println!("halyard-server is running");
    println!(
        "  API:        {}/api/v1   (OpenAPI: /api/v1/openapi.json, metrics: /metrics)",
        s.url
    );
    println!("  dashboard:  {}/", s.url);
    println!("  MQTT:       {}", s.broker);
    println!(
        "  admin token: halyard-server --print-admin-token   (file {})",
        s.admin_token_file.display()
    );
    println!("  enrollment token (one device, 24 h): {}", s.enroll_token);
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttd=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.print_admin_token {
        let token = server::admin_token(&args.data_dir)
            .with_context(|| format!("admin token in {}", args.data_dir.display()))?;
        println!("{token}");
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("listening on {}", args.http))?;
    server::run(listener, shutdown_signal(), settings(&args)?, |s| {
        print_started(&s)
    })
    .await?;
    Ok(())
}
