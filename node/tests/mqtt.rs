//! End to end over the real Mosquitto on 127.0.0.1:1883 (skipped, loudly, when nothing listens there;
//! `.ci/run` starts it): a test "server" publishes a signed `desired`, the agent (real driver, link,
//! HTTP fetcher, MQTT transport; simulated hardware) downloads the delta from a loopback artifact
//! server, installs, reboots, passes its health checks and commits, and every report and event the
//! test receives verifies with the device key. A forged `desired` is ignored; a failing health check
//! ends in a signed RolledBack with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use halyard_hardware::block::faulty::PowerRail;
use halyard_node::app::Link;
use halyard_node::config::{HttpSettings, MqttSettings};
use halyard_node::driver::Halt;
use halyard_node::faults::NoCrash;
use halyard_node::health::Check;
use halyard_node::identity::{Identity, SeqCounter};
use halyard_node::transport::http::HttpFetcher;
use halyard_protocol::topics::Topic;
use halyard_protocol::{
    AgentState, DeltaOffer, Desired, DeviceId, Envelope, Event, Kind, Presence, Report, Sha256,
};
use rumqttc::{Client, Event as MqttEvent, MqttOptions, Packet, QoS};
use support::http_server::ArtifactServer;
use support::*;

const BROKER: &str = "127.0.0.1:1883";

fn broker_up() -> bool {
    let addr: SocketAddr = BROKER.parse().unwrap();
    if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        return true;
    }
    eprintln!("SKIPPED: no MQTT broker listens on {BROKER} (install mosquitto or run .ci/run)");
    false
}

fn mqtt_settings() -> MqttSettings {
    MqttSettings {
        host: "127.0.0.1".into(),
        port: 1883,
        tls_ca: None,
        credentials: None,
        keep_alive: Duration::from_secs(30),
        tick: Duration::from_millis(50),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(2),
    }
}

fn server_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// The test's stand-in for halyard-server: one MQTT client on the device's topics.
struct TestServer {
    client: Client,
    rx: Receiver<(Topic, Envelope)>,
    device: DeviceId,
    seq: u64,
    online: std::cell::Cell<u32>,
}

impl TestServer {
    fn connect(device: &DeviceId) -> Self {
        let id = format!("test-server-{device}");
        let (client, mut connection) = Client::new(MqttOptions::new(id, "127.0.0.1", 1883), 32);
        client
            .subscribe(
                format!("{}/{device}/#", halyard_protocol::topics::ROOT),
                QoS::AtLeastOnce,
            )
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let Some((_, topic)) = Topic::parse(&p.topic) else {
                            continue;
                        };
                        if p.payload.is_empty() {
                            continue;
                        }
                        if tx.send((topic, Envelope::decode(&p.payload).unwrap())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("test server subscribed");
        Self {
            client,
            rx,
            device: device.clone(),
            seq: 100,
            online: std::cell::Cell::new(0),
        }
    }

    fn publish_desired(&mut self, desired: &Desired, key: &SigningKey) {
        self.seq += 1;
        let env = Envelope::seal(desired, &self.device, self.seq, key).unwrap();
        let topic = Topic::Desired.for_device(&self.device);
        self.client
            .publish(topic, QoS::AtLeastOnce, true, env.encode())
            .unwrap();
    }

    /// Wait for a verified event whose target state matches.
    fn wait_event(
        &self,
        device_key: &VerifyingKey,
        seen: &mut Vec<Event>,
        want: impl Fn(&AgentState) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Ok((topic, env)) = self.rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            match topic {
                Topic::Events => {
                    // One transition, or the transitions of one settle in one envelope.
                    let events = match env.kind {
                        Kind::Events => {
                            env.open::<halyard_protocol::Events>(device_key)
                                .expect("events are signed by the device")
                                .events
                        }
                        _ => vec![env.open(device_key).expect("events are signed by the device")],
                    };
                    for event in events {
                        let done = want(&event.to);
                        seen.push(event);
                        if done {
                            return;
                        }
                    }
                }
                Topic::Report => {
                    let _: Report = env.open(device_key).expect("reports are signed by the device");
                }
                Topic::Presence => {
                    let p: Presence = env.open(device_key).expect("presence is signed by the device");
                    assert!(p.online, "the agent is running: {p:?}");
                    self.online.set(self.online.get() + 1);
                }
                Topic::Desired => assert_eq!(env.kind, Kind::Desired),
            }
        }
        panic!("no matching event within 60 s; saw {seen:#?}");
    }

    /// Clear the retained messages this test left on the broker.
    fn clean_up(self) {
        for topic in [Topic::Desired, Topic::Report, Topic::Presence] {
            let _ = self.client.publish(
                topic.for_device(&self.device),
                QoS::AtLeastOnce,
                true,
                Vec::<u8>::new(),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.client.disconnect();
    }
}

/// The agent on a simulated device: boots, runs the link until a reboot, reboots, again, until stopped.
fn spawn_agent(device: Device, identity: &Identity, stop: Arc<AtomicBool>) -> JoinHandle<Device> {
    let seq = SeqCounter::open(&device.data_dir, Arc::new(NoCrash)).unwrap();
    let (id, key) = (identity.device_id().clone(), identity.signing_key());
    std::thread::spawn(move || {
        let clock = Arc::new(device.clock.clone());
        let server = server_key().verifying_key();
        let mut link = Link::connect(&mqtt_settings(), id, key, seq, server, clock);
        let rail = PowerRail::always_on();
        while !stop.load(Ordering::SeqCst) {
            device.bootloader(&rail).unwrap();
            let http = HttpSettings {
                ca_file: None,
                max_artifact_bytes: 1 << 30,
                connect_timeout: Duration::from_secs(5),
                read_timeout: Duration::from_secs(5),
            };
            let fetcher = Box::new(HttpFetcher::new(&http).unwrap());
            let (mut driver, _) = device.start_with(&rail, fetcher).unwrap();
            let halt = link.serve(&mut driver, Duration::from_millis(50), &stop).unwrap();
            if halt == Halt::Rebooting {
                device.power.take_events();
            }
        }
        link.shutdown();
        device
    })
}

struct World {
    _tmp: tempfile::TempDir,
    device: Device,
    identity: Identity,
    artifacts: ArtifactServer,
}

fn world(checks: Vec<Check>) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = image_bytes(300 * 1024, 11);
    let mut device = Device::new(tmp.path(), tmp.path(), &v1);
    device.checks = checks;
    let identity = Identity::load_or_create(&device.data_dir, &NoCrash).unwrap();
    World {
        _tmp: tmp,
        device,
        identity,
        artifacts: ArtifactServer::start(),
    }
}

fn desired_install(w: &World, v1: &[u8], v2: &[u8]) -> (Desired, u64) {
    let full = full_bundle("2.0.0", 1, v2);
    let delta = delta_bundle("2.0.0", "1.0.0", v1, v2);
    w.artifacts.put("full.hyd", full.clone());
    w.artifacts.put("delta.hyd", delta.clone());
    let artifact = |name: &str, bytes: &[u8]| halyard_protocol::Artifact {
        url: w.artifacts.url(name),
        sha256: Sha256::of(bytes),
        size: bytes.len() as u64,
    };
    let desired = Desired {
        rollout: Some("r-mqtt".into()),
        action: install(
            "2.0.0",
            &artifact("full.hyd", &full),
            vec![DeltaOffer {
                source_sha256: Sha256::of(v1),
                artifact: artifact("delta.hyd", &delta),
            }],
        ),
    };
    (desired, delta.len() as u64)
}

fn release_v2(v1: &[u8]) -> Vec<u8> {
    let mut v2 = v1.to_vec();
    v2[5000..9000].fill(0x5A);
    v2
}

#[test]
fn signed_desired_installs_the_delta_and_commits_forged_one_is_ignored() {
    if !broker_up() {
        return;
    }
    let w = world(vec![Check::Command {
        program: "/bin/true".into(),
        args: vec![],
        timeout: Duration::from_secs(5),
    }]);
    let v1 = image_bytes(300 * 1024, 11);
    let v2 = release_v2(&v1);
    let device_key = VerifyingKey::from_bytes(&w.identity.public_key()).unwrap();
    let mut server = TestServer::connect(w.identity.device_id());
    let stop = Arc::new(AtomicBool::new(false));
    let agent = spawn_agent(w.device.clone(), &w.identity, stop.clone());

    let (desired, delta_size) = desired_install(&w, &v1, &v2);
    server.publish_desired(&desired, &SigningKey::from_bytes(&[7; 32]));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        w.artifacts.bytes_sent(),
        0,
        "a forged desired must not start a download"
    );

    let mut seen = Vec::new();
    server.publish_desired(&desired, &server_key());
    server.wait_event(
        &device_key,
        &mut seen,
        |s| matches!(s, AgentState::Committed { version } if version == "2.0.0"),
    );
    stop.store(true, Ordering::SeqCst);
    let device = agent.join().unwrap();
    assert!(server.online.get() >= 1, "a signed online presence was published");
    server.clean_up();

    let path: Vec<_> = seen.iter().map(|e| format!("{:?}", e.to)).collect();
    assert!(
        seen.iter()
            .any(|e| matches!(e.to, AgentState::Downloading { .. })),
        "{path:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e.to, AgentState::Trial { .. })),
        "{path:?}"
    );
    assert!(
        seen.iter().all(|e| e.rollout.as_deref() == Some("r-mqtt")),
        "{path:?}"
    );
    assert_eq!(
        device.slot_hash(halyard_hardware::Slot::B, v2.len() as u64),
        Sha256::of(&v2)
    );
    let sent = w.artifacts.bytes_sent();
    assert!(
        sent >= delta_size && sent < delta_size * 2,
        "delta of {delta_size} bytes, sent {sent}"
    );
}

#[test]
fn failing_health_check_rolls_back_and_reports_the_reason() {
    if !broker_up() {
        return;
    }
    let w = world(vec![Check::Command {
        program: "/bin/false".into(),
        args: vec![],
        timeout: Duration::from_secs(5),
    }]);
    let v1 = image_bytes(300 * 1024, 11);
    let v2 = release_v2(&v1);
    let device_key = VerifyingKey::from_bytes(&w.identity.public_key()).unwrap();
    let mut server = TestServer::connect(w.identity.device_id());
    let stop = Arc::new(AtomicBool::new(false));
    let agent = spawn_agent(w.device.clone(), &w.identity, stop.clone());

    let (desired, _) = desired_install(&w, &v1, &v2);
    server.publish_desired(&desired, &server_key());
    let mut seen = Vec::new();
    server.wait_event(&device_key, &mut seen, |s| {
        matches!(s, AgentState::RolledBack { .. })
    });
    stop.store(true, Ordering::SeqCst);
    let device = agent.join().unwrap();
    server.clean_up();

    let Some(AgentState::RolledBack { version, reason }) = seen.last().map(|e| e.to.clone()) else {
        panic!("{seen:?}")
    };
    assert_eq!(version, "2.0.0");
    assert!(
        reason.contains("/bin/false"),
        "reason names the failing check: {reason}"
    );
    // The event precedes the reboot, so check the boot flags rather than the running slot.
    let boot = device.boot_env();
    assert!(!boot.state(halyard_hardware::Slot::B).bootable, "{boot:?}");
    assert_eq!(
        device.bootloader(&PowerRail::always_on()).unwrap(),
        halyard_hardware::Slot::A,
        "the next boot is the old slot"
    );
}
