//! The embedded MQTT broker (rumqttd, MQTT 3.1.1) for the zero-config path. It runs on its own threads
//! for the life of the process; the server talks to it over loopback like any external broker, so
//! both paths are one code path.

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

/// Starts the broker on `listen` and returns the address it listens on (port 0 picks a free one).
#[cfg(feature = "embedded-broker")]
pub fn start(listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
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
    let config: rumqttd::Config = toml::from_str(&config).map_err(|e| BrokerError::Config(e.to_string()))?;
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
pub fn start(_listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
    Err(BrokerError::NotBuilt)
}
