//! The embedded MQTT broker (rumqttd, MQTT 3.1.1) for the zero-config path. It runs on its own threads
//! for the life of the process; the server talks to it over loopback like any external broker, so
//! both paths are one code path.
//!
//! With a [`LoginCheck`] the broker refuses clients whose username and password do not check out (the
//! same per-device credentials Mosquitto gets, `crate::broker_auth`). rumqttd has no topic ACLs, so
//! the embedded broker authenticates but does not confine devices to their topics.

use std::net::SocketAddr;

/// The embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot listen for MQTT on {addr}: {source} (is another broker such as Mosquitto using it? choose --mqtt ADDR:PORT, or --broker URL to use that broker)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker configuration: {0}")]
    Config(String),
    #[error("this build has no embedded broker (feature `embedded-broker`); use --broker URL")]
    NotBuilt,
}

/// Decides whether (username, password) may connect.
pub type LoginCheck = std::sync::Arc<
    dyn Fn(String, String) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync,
>;

use std::future::Future;

/// Starts the broker on `listen` and returns the address it listens on (port 0 picks a free one).
/// With `login`, every CONNECT must carry credentials that it accepts.
#[cfg(feature = "embedded-broker")]
pub fn start(listen: SocketAddr, login: Option<LoginCheck>) -> Result<SocketAddr, BrokerError> {
    // Probe the address first so a busy port gives a clear error instead of a log line from a thread.
    let probe =
        std::net::TcpListener::bind(listen).map_err(|source| BrokerError::Bind { addr: listen, source })?;
    let addr = probe
        .local_addr()
        .map_err(|source| BrokerError::Bind { addr: listen, source })?;
    drop(probe);
    let config = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "{addr}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 131072
    max_inflight_count = 500
    dynamic_filters = true
"#
    );
    let mut config: rumqttd::Config =
        toml::from_str(&config).map_err(|e| BrokerError::Config(e.to_string()))?;
    if let Some(check) = login {
        for server in config.v4.iter_mut().flat_map(|m| m.values_mut()) {
            let check = check.clone();
            server.set_auth_handler(move |_client: String, user: String, pass: String| check(user, pass));
        }
    }
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|e| BrokerError::Config(e.to_string()))?;
    Ok(addr)
}

#[cfg(not(feature = "embedded-broker"))]
pub fn start(_listen: SocketAddr, _login: Option<LoginCheck>) -> Result<SocketAddr, BrokerError> {
    Err(BrokerError::NotBuilt)
}
