//! The simulated fleet: enrollment over HTTP, one MQTT connection per device, the report schedule,
//! and the clean-up of retained messages.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use halyard_protocol::{AgentState, DeviceId, Envelope, HealthSummary, Report, Slot, SlotReport, Topic};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::Args;
use crate::observe::{ProbeJob, http};

/// One simulated device.
#[derive(Debug)]
pub struct Device {
    pub id: DeviceId,
    key: SigningKey,
    class: &'static str,
    pub probe: bool,
}

fn device_key(run: &[u8; 16], i: usize) -> SigningKey {
    let seed: [u8; 32] = Sha256::new()
        .chain_update(run)
        .chain_update((i as u64).to_le_bytes())
        .finalize()
        .into();
    SigningKey::from_bytes(&seed)
}

const CLASSES: [&str; 3] = ["pos-x86", "kiosk-arm", "gateway-x86"];

fn enroll_one(agent: &ureq::Agent, args: &Args, key: &SigningKey, i: usize) -> anyhow::Result<DeviceId> {
    let tok = http::post(
        agent,
        &format!("{}/api/v1/enroll-tokens", args.http),
        Some(&args.admin_token),
        &serde_json::json!({"ttl_secs": 3600}),
    )?;
    let token = tok["token"].as_str().context("no token in enroll-token answer")?;
    let public = key.verifying_key().to_bytes();
    let body = serde_json::json!({
        "token": token,
        "public_key": base64::engine::general_purpose::STANDARD.encode(public),
        "product": "loadgen",
        "hardware_class": CLASSES[i % CLASSES.len()],
        "agent_version": "loadgen",
    });
    let resp = http::post(agent, &format!("{}/v1/enroll", args.http), None, &body)?;
    let id = DeviceId::from_public_key(&public);
    if resp["device_id"].as_str() != Some(id.as_str()) {
        bail!("enrollment answered {resp}, expected device {id}");
    }
    Ok(id)
}

/// Enrolls every device, `--enroll-workers` at a time.
pub fn enroll_all(args: &Args, probes: usize) -> anyhow::Result<Vec<Device>> {
    let mut run = [0u8; 16];
    getrandom::fill(&mut run).map_err(|e| anyhow::anyhow!("random run id: {e}"))?;
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<(usize, Device)>> = Mutex::new(Vec::with_capacity(args.devices));
    let stride = (args.devices / probes.max(1)).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.enroll_workers.max(1))
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    let agent = http::agent();
                    loop {
                        let i = next.fetch_add(1, Relaxed);
                        if i >= args.devices {
                            return Ok(());
                        }
                        let key = device_key(&run, i);
                        let id = enroll_one(&agent, args, &key, i)
                            .with_context(|| format!("enrolling device {i}"))?;
                        let probe = i.is_multiple_of(stride) && i / stride < probes;
                        let mut v = out.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?;
                        v.push((
                            i,
                            Device {
                                id,
                                key,
                                class: CLASSES[i % CLASSES.len()],
                                probe,
                            },
                        ));
                        if v.len().is_multiple_of(1000) {
                            eprintln!("loadgen: enrolled {}", v.len());
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("enroll worker panicked"))?)
    })?;
    let mut v = out.into_inner().map_err(|_| anyhow::anyhow!("lock poisoned"))?;
    v.sort_by_key(|(i, _)| *i);
    Ok(v.into_iter().map(|(_, d)| d).collect())
}

/// Counters shared by the connection tasks and the publisher.
#[derive(Debug)]
pub struct Shared {
    pub t0: Instant,
    pub connected: AtomicUsize,
    pub conn_errors: AtomicU64,
    pub acked: AtomicU64,
    /// Per device: microseconds since `t0` of its last publish (for PUBACK latency).
    pub last_pub: Vec<AtomicU64>,
    pub measuring: AtomicBool,
    pub stopping: AtomicBool,
    /// Publish → PUBACK, microseconds, during the window.
    pub ack_us: Mutex<Vec<u32>>,
}

impl Shared {
    pub fn us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }
}

pub async fn drive(shared: Arc<Shared>, i: usize, mut el: EventLoop) {
    let mut up = false;
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) if !up => {
                up = true;
                shared.connected.fetch_add(1, Relaxed);
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                shared.acked.fetch_add(1, Relaxed);
                if shared.measuring.load(Relaxed) {
                    let sent = shared.last_pub.get(i).map_or(0, |a| a.load(Relaxed));
                    let took = shared.us().saturating_sub(sent).min(u32::MAX as u64) as u32;
                    if let Ok(mut v) = shared.ack_us.lock() {
                        v.push(took);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if shared.stopping.load(Relaxed) {
                    return;
                }
                if shared.conn_errors.fetch_add(1, Relaxed) < 5 {
                    eprintln!("loadgen: device {i}: MQTT error: {e}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

pub async fn connect_all(
    args: &Args,
    devices: &[Device],
    shared: &Arc<Shared>,
) -> anyhow::Result<Vec<AsyncClient>> {
    let url = args
        .broker
        .strip_prefix("mqtt://")
        .context("--broker must be mqtt://host:port")?;
    let (host, port) = url
        .trim_end_matches('/')
        .rsplit_once(':')
        .context("--broker needs a port")?;
    let port: u16 = port.parse().context("--broker port")?;
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.connect_rate.max(1)));
    let mut clients = Vec::with_capacity(devices.len());
    let start = Instant::now();
    for (i, d) in devices.iter().enumerate() {
        let mut opts = MqttOptions::new(d.id.as_str(), host, port);
        opts.set_keep_alive(Duration::from_secs(60));
        opts.set_clean_session(true);
        opts.set_max_packet_size(16 * 1024, 16 * 1024);
        let (client, el) = AsyncClient::new(opts, 8);
        tokio::spawn(drive(shared.clone(), i, el));
        clients.push(client);
        tokio::time::sleep_until(start + gap * (i as u32 + 1)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.connected.load(Relaxed) < devices.len() {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} devices connected",
                shared.connected.load(Relaxed),
                devices.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(clients)
}

fn report(d: &Device, at: u64) -> Report {
    let slot = |v: Option<&str>| SlotReport {
        version: v.map(str::to_owned),
        image_sha256: None,
        bootable: v.is_some(),
        successful: v.is_some(),
    };
    Report {
        at,
        agent_version: "loadgen".into(),
        product: "loadgen".into(),
        hardware_class: d.class.into(),
        active: Slot::A,
        slot_a: slot(Some("1.0.0")),
        slot_b: slot(None),
        state: AgentState::Committed {
            version: "1.0.0".into(),
        },
        last_error: None,
        health: Some(HealthSummary {
            healthy: true,
            failing: Vec::new(),
            checked_at: at,
        }),
    }
}

/// What the publisher did.
#[derive(Debug, Default)]
pub struct Sent {
    pub total: u64,
    pub in_window: u64,
    pub failed: u64,
    /// How far behind its schedule the publisher fell at worst, milliseconds.
    pub max_lag_ms: f64,
}

/// Publishes every device's report on its schedule until `stop_at`; sends probe publishes to `probes`.
pub async fn publish_loop(
    devices: &[Device],
    clients: &[AsyncClient],
    args: &Args,
    shared: &Shared,
    probes: tokio::sync::mpsc::UnboundedSender<ProbeJob>,
) -> Sent {
    let n = devices.len().max(1);
    let slot = Duration::from_secs_f64(args.period / n as f64);
    let start = Instant::now();
    let stop_at = start + Duration::from_secs_f64(args.warmup + args.duration);
    let mut last_at = vec![0u64; n];
    let mut sent = Sent::default();
    for k in 0u64.. {
        let due = start + slot * (k as u32);
        if due >= stop_at {
            break;
        }
        tokio::time::sleep_until(due).await;
        sent.max_lag_ms = sent.max_lag_ms.max(due.elapsed().as_secs_f64() * 1e3);
        let i = (k % n as u64) as usize;
        let (Some(d), Some(c)) = (devices.get(i), clients.get(i)) else {
            break;
        };
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_secs());
        let at = now_unix.max(last_at[i] + 1);
        last_at[i] = at;
        let Some(us) = publish_one(d, c, shared, i, at, k / n as u64 + 1).await else {
            sent.failed += 1;
            continue;
        };
        sent.total += 1;
        let measured = shared.measuring.load(Relaxed);
        sent.in_window += u64::from(measured);
        if d.probe && measured {
            let _ = probes.send(ProbeJob {
                id: d.id.clone(),
                at,
                sent_us: us,
            });
        }
    }
    sent
}

/// Signs and publishes one report of device `i`; returns when it was handed to the client (µs since t0).
async fn publish_one(
    d: &Device,
    c: &AsyncClient,
    shared: &Shared,
    i: usize,
    at: u64,
    seq: u64,
) -> Option<u64> {
    let bytes = Envelope::seal(&report(d, at), &d.id, seq, &d.key).ok()?.encode();
    let us = shared.us();
    if let Some(a) = shared.last_pub.get(i) {
        a.store(us, Relaxed);
    }
    let topic = Topic::Report.for_device(&d.id);
    c.publish(topic, QoS::AtLeastOnce, true, bytes).await.ok()?;
    Some(us)
}

/// Clears the retained reports this run left on the broker, then disconnects every client.
pub async fn clean_up(devices: &[Device], clients: &[AsyncClient], shared: &Shared) {
    let before = shared.acked.load(Relaxed);
    for (d, c) in devices.iter().zip(clients) {
        let _ = c
            .publish(
                Topic::Report.for_device(&d.id),
                QoS::AtLeastOnce,
                true,
                Vec::new(),
            )
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.acked.load(Relaxed) < before + devices.len() as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shared.stopping.store(true, Relaxed);
    for c in clients {
        let _ = c.disconnect().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}
