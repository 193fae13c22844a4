//! The server's MQTT side: one client connection (to the embedded broker or an external one) that
//! subscribes to every device's `report`, `events` and `presence`, hands messages to the ingest worker
//! in batches, and publishes retained `desired` envelopes. On every (re)connect it republishes all
//! stored desired envelopes, so a restarted broker or server never loses an instruction.
//!
//! `mqtts://` broker URLs connect over TLS trusting `Settings::broker_ca` (see `mqtt_tls`).
//!
//! With `Settings::mqtt_shared_group` (external brokers) the replicas subscribe as one shared group
//! (`$share/<group>/...`) and the broker hands each device message to one of them (see
//! docs/security.md for what that costs: ordering across replicas, no retained replay).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use halyard_protocol::{DeviceId, Topic};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};

use crate::app::{App, Outgoing};
use crate::ingest;
use crate::mqtt_tls::{self, BrokerUrl};

pub use crate::mqtt_tls::BrokerUrlError;

/// `mqtt://host:port` (port defaults to 1883) or `mqtts://host:port` (8883) → (host, port).
pub fn parse_url(url: &str) -> Result<(String, u16), BrokerUrlError> {
    BrokerUrl::parse(url).map(|b| (b.host, b.port))
}

const MAX_PACKET: usize = 128 * 1024;

/// The subscriptions for device messages: `report`, `events` and `presence` of every device, as the
/// shared-subscription `group` when given (MQTT 5 `$share/<group>/<filter>`, which Mosquitto 2 and
/// EMQX also accept from MQTT 3.1.1 clients).
pub fn device_filters(group: Option<&str>) -> Vec<String> {
    [Topic::Report, Topic::Events, Topic::Presence]
        .into_iter()
        .map(|t| match group {
            Some(g) => format!("$share/{g}/{}", t.fleet_filter()),
            None => t.fleet_filter(),
        })
        .collect()
}

/// A shared-subscription group name is one non-empty topic level without wildcards.
pub fn check_group(group: &str) -> Result<(), BrokerUrlError> {
    if group.is_empty() || group.contains(['/', '+', '#']) {
        return Err(BrokerUrlError {
            url: format!("$share/{group}/..."),
            why: "a shared subscription group is one topic level without '/', '+' or '#'",
        });
    }
    Ok(())
}

/// The broker URL or its TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    #[error(transparent)]
    Url(#[from] BrokerUrlError),
    #[error(transparent)]
    Tls(#[from] mqtt_tls::BrokerTlsError),
}

/// Starts the MQTT client tasks; they end when `shutdown` turns true.
pub fn spawn(
    app: Arc<App>,
    url: &str,
    outgoing: mpsc::Receiver<Outgoing>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), MqttSetupError> {
    let broker = BrokerUrl::parse(url)?;
    let transport = mqtt_tls::transport(&broker, url, app.settings.broker_ca.as_deref())?;
    // Only an external broker: the embedded one serves a single server anyway.
    let group = match &app.settings.broker {
        crate::settings::BrokerSettings::External { .. } => app.settings.mqtt_shared_group.clone(),
        crate::settings::BrokerSettings::Embedded { .. } => None,
    };
    if let Some(g) = &group {
        check_group(g)?;
    }
    // Unique per replica (process ids repeat across containers; two clients with one id evict each other).
    let mut opts = MqttOptions::new(
        format!("halyard-server-{}", app.leader.id()),
        broker.host,
        broker.port,
    );
    opts.set_transport(transport);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    let account = &app.broker_account;
    opts.set_credentials(account.user.clone(), account.password.clone());
    let (client, eventloop) = AsyncClient::new(opts, 1024);
    let (to_ingest, from_mqtt) = mpsc::channel(8192);
    tokio::spawn(publisher(app.clone(), client.clone(), outgoing, shutdown.clone()));
    tokio::spawn(ingest_worker(app.clone(), from_mqtt));
    let filters = device_filters(group.as_deref());
    tokio::spawn(poll(app, client, eventloop, to_ingest, shutdown, filters));
    Ok(())
}

async fn poll(
    app: Arc<App>,
    client: AsyncClient,
    mut eventloop: EventLoop,
    to_ingest: mpsc::Sender<(DeviceId, Topic, Vec<u8>)>,
    mut shutdown: watch::Receiver<bool>,
    filters: Vec<String>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let event = tokio::select! {
            e = eventloop.poll() => e,
            _ = shutdown.changed() => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(200);
                app.metrics.broker_connects.fetch_add(1, Relaxed);
                tracing::info!("connected to the MQTT broker");
                tokio::spawn(on_connect(app.clone(), client.clone(), filters.clone()));
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some((device, topic)) = Topic::parse(&p.topic) else {
                    continue;
                };
                if topic == Topic::Desired || p.payload.is_empty() {
                    continue;
                }
                if to_ingest.send((device, topic, p.payload.to_vec())).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                app.metrics.broker_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    let _ = client.disconnect().await;
}

async fn on_connect(app: Arc<App>, client: AsyncClient, filters: Vec<String>) {
    for filter in filters {
        if let Err(e) = client.subscribe(filter, QoS::AtLeastOnce).await {
            tracing::error!(error = %e, "subscribing");
        }
    }
    match app.db(|s| s.all_desired()).await {
        Ok(all) => {
            tracing::info!(count = all.len(), "republishing desired state");
            for d in all {
                let topic = Topic::Desired.for_device(&d.device);
                if client
                    .publish(topic, QoS::AtLeastOnce, true, d.envelope.into_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "loading desired state to republish"),
    }
}

async fn publisher(
    app: Arc<App>,
    client: AsyncClient,
    mut outgoing: mpsc::Receiver<Outgoing>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let msg = tokio::select! {
            m = outgoing.recv() => m,
            _ = shutdown.changed() => None,
        };
        let Some(msg) = msg else { return };
        if client
            .publish(msg.topic, QoS::AtLeastOnce, true, msg.payload)
            .await
            .is_err()
        {
            return;
        }
        app.metrics
            .desired_published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

const BATCH: usize = 512;

async fn ingest_worker(app: Arc<App>, mut rx: mpsc::Receiver<(DeviceId, Topic, Vec<u8>)>) {
    while let Some(first) = rx.recv().await {
        let mut raw = vec![first];
        while raw.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => raw.push(m),
                Err(_) => break,
            }
        }
        ingest::take_batch(&app, raw, app.now()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_group_prefixes_every_device_filter() {
        assert_eq!(
            device_filters(Some("halyard")),
            [
                "$share/halyard/halyard/v1/devices/+/report",
                "$share/halyard/halyard/v1/devices/+/events",
                "$share/halyard/halyard/v1/devices/+/presence",
            ]
        );
        assert_eq!(device_filters(None)[0], "halyard/v1/devices/+/report");
        assert!(check_group("halyard").is_ok());
        for bad in ["", "a/b", "+", "#"] {
            assert!(check_group(bad).is_err(), "{bad:?}");
        }
    }
}
