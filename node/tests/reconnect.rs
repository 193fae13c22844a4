//! Reconnect over the real Mosquitto through a loopback TCP proxy the test can cut: the broker fires
//! the agent's pre-signed offline will, the agent reconnects after its backoff, publishes a fresh
//! online presence (sequence numbers strictly rise: online, will, online) and resubscribes, so a
//! desired state published after the cut still reaches it. Publications made while the broker cannot
//! be reached wait in the client's queue; once it is full `Mqtt::publish` waits for room, and all of
//! them go out, in order and intact, when the connection comes up. Publications in flight when a live
//! connection drops (written, never acknowledged) are not lost to the clean session of the reconnect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use halyard_hardware::block::faulty::PowerRail;
use halyard_node::app::Link;
use halyard_node::config::MqttSettings;
use halyard_node::faults::NoCrash;
use halyard_node::identity::{Identity, SeqCounter};
use halyard_node::transport::codec::Publication;
use halyard_node::transport::mqtt::{Inbound, Mqtt};
use halyard_protocol::topics::Topic;
use halyard_protocol::{Desired, Envelope, Event, Kind, Presence};
use rumqttc::{Client, Event as MqttEvent, MqttOptions, Packet, QoS};
use support::*;

/// Copies bytes both ways between `client` and `broker`, each way on a thread of its own. While
/// `hold` is set, what the client sends is read but held back from the broker (the client sees it
/// written, the broker never acknowledges it).
fn forward(client: TcpStream, broker: TcpStream, hold: Arc<AtomicBool>) {
    let upstream = Holding {
        from: client.try_clone().unwrap(),
        hold,
    };
    let mut to_broker = broker.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut { upstream }, &mut to_broker);
        let _ = to_broker.shutdown(Shutdown::Both);
    });
    let (mut from, mut to) = (broker, client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// A reader that waits after each read while `hold` is set, before handing the bytes on.
struct Holding {
    from: TcpStream,
    hold: Arc<AtomicBool>,
}

impl std::io::Read for Holding {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.from.read(buf)?;
        while self.hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(n)
    }
}

/// Forwards loopback connections to the broker; `cut` drops every open one, `hold` stalls what the
/// clients send until the next `cut`.
#[derive(Clone, Default)]
struct Proxy {
    open: Arc<Mutex<Vec<TcpStream>>>,
    hold: Arc<AtomicBool>,
}

impl Proxy {
    fn start(self) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(broker) = TcpStream::connect("127.0.0.1:1883") else {
                    continue;
                };
                self.open
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), broker.try_clone().unwrap()]);
                forward(client, broker, self.hold.clone());
            }
        });
        port
    }

    /// Hold back everything the clients send from now on (it never reaches the broker).
    fn hold(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Drop every open connection (and what was held back on them); later ones forward again.
    fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.hold.store(false, Ordering::SeqCst);
    }
}

/// Accepts loopback connections but forwards nothing until `open`; then forwards each one (the bytes
/// the client sent meanwhile included) to the broker.
fn gated_proxy(open: mpsc::Receiver<()>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let mut opened = false;
        loop {
            match listener.accept() {
                Ok((client, _)) => held.push(client),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    opened |= open.recv_timeout(Duration::from_millis(20)).is_ok();
                }
                Err(_) => return,
            }
            if !opened {
                continue;
            }
            for client in held.drain(..) {
                client.set_nonblocking(false).unwrap();
                let broker = TcpStream::connect("127.0.0.1:1883").unwrap();
                forward(client, broker, Arc::default());
            }
        }
    });
    port
}

/// The agent's MQTT client publishing to `topic` through the proxy on `port`, reconnecting after
/// `backoff` (min, max) milliseconds.
fn publisher(port: u16, topic: &str, (min, max): (u64, u64)) -> Mqtt {
    let settings = MqttSettings {
        host: "127.0.0.1".into(),
        port,
        tls_ca: None,
        credentials: None,
        keep_alive: Duration::from_secs(30),
        tick: Duration::from_millis(50),
        reconnect_min: Duration::from_millis(min),
        reconnect_max: Duration::from_millis(max),
    };
    Mqtt::start(
        &settings,
        &format!("pub-{topic}"),
        &topic.replace("/events", "/desired"),
        Box::new(|| None),
    )
}

fn broker_up() -> bool {
    let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
    if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        return true;
    }
    eprintln!("SKIPPED: no MQTT broker listens on 127.0.0.1:1883 (install mosquitto or run .ci/run)");
    false
}

#[test]
fn publications_beyond_the_full_queue_wait_and_all_go_out_in_order() {
    const QUEUE: usize = 64; // `Mqtt`'s request channel
    const SENT: usize = 100;
    if !broker_up() {
        return;
    }
    let topic = format!("halyard/v1/devices/queue-test-{}/events", std::process::id());
    let (_watch, rx) = watch(&topic);

    let (open, gate) = mpsc::channel();
    let mqtt = publisher(gated_proxy(gate), &topic, (100, 500));
    let queued = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let (queued, topic) = (queued.clone(), topic.clone());
        std::thread::spawn(move || {
            for i in 0..SENT {
                let payload = format!("message {i}").into_bytes();
                mqtt.publish(Publication {
                    topic: topic.clone(),
                    payload,
                    retain: false,
                })
                .unwrap();
                queued.fetch_add(1, Ordering::SeqCst);
            }
            mqtt
        })
    };
    let start = std::time::Instant::now();
    while queued.load(Ordering::SeqCst) < QUEUE {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the queue never filled"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A negative check needs a moment: nothing drains the queue while the proxy holds the connection.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        queued.load(Ordering::SeqCst),
        QUEUE,
        "publish waits while the queue is full"
    );

    open.send(()).unwrap();
    for i in 0..SENT {
        let got = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("every message arrives");
        assert_eq!(got, format!("message {i}").into_bytes(), "in order and intact");
    }
    publisher.join().unwrap().shutdown();
}

/// Subscribes a watcher to `topic` on the broker; yields each payload that arrives there.
fn watch(topic: &str) -> (Client, mpsc::Receiver<Vec<u8>>) {
    let (watch, mut connection) =
        Client::new(MqttOptions::new(format!("watch-{topic}"), "127.0.0.1", 1883), 16);
    watch.subscribe(topic, QoS::AtLeastOnce).unwrap();
    let (subscribed, on_suback) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => subscribed.send(()).unwrap_or(()),
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    if tx.send(p.payload.to_vec()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    on_suback
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    (watch, rx)
}

/// A dropped connection hands rumqttc's in-flight and still-queued publications to its pending list,
/// which it empties when the next connection starts a clean session: the agent must carry them over
/// itself. Publications the broker never saw when the connection died, and those made while it was
/// down, all arrive after the reconnect, in order (a duplicate would be allowed, not a loss).
#[test]
fn publications_in_flight_when_the_connection_drops_arrive_after_the_reconnect() {
    // More than rumqttc's in-flight window (100): the rest wait in its request channel (64 deep).
    const UNACKED: usize = 150;
    const WHILE_DOWN: usize = 3;
    if !broker_up() {
        return;
    }
    let topic = format!("halyard/v1/devices/drop-test-{}/events", std::process::id());
    let (_watch, arrivals) = watch(&topic);
    let proxy = Proxy::default();
    let mqtt = publisher(proxy.clone().start(), &topic, (300, 600));
    let publish = |i: usize| {
        mqtt.publish(Publication {
            topic: topic.clone(),
            payload: format!("message {i}").into_bytes(),
            retain: false,
        })
        .unwrap()
    };
    let next = || arrivals.recv_timeout(Duration::from_secs(15));
    assert_eq!(mqtt.recv(Duration::from_secs(10)), Some(Inbound::Connected));
    publish(0);
    assert_eq!(next().unwrap(), b"message 0", "the path works");

    // Written to the socket (or queued behind the full window), never acknowledged when the cut comes.
    proxy.hold();
    (1..=UNACKED).for_each(publish);
    std::thread::sleep(Duration::from_millis(300));
    proxy.cut();
    let start = std::time::Instant::now();
    while mqtt.connected() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the drop went unnoticed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (UNACKED + 1..=UNACKED + WHILE_DOWN).for_each(publish);

    let mut seen: Vec<usize> = Vec::new();
    while seen.len() < UNACKED + WHILE_DOWN {
        let Ok(payload) = next() else {
            panic!("lost: got only {seen:?} of 1..={}", UNACKED + WHILE_DOWN);
        };
        let text = String::from_utf8(payload).unwrap();
        let i: usize = text.strip_prefix("message ").unwrap().parse().unwrap();
        if i > 0 && !seen.contains(&i) {
            seen.push(i);
        }
    }
    let expected: Vec<usize> = (1..=UNACKED + WHILE_DOWN).collect();
    assert_eq!(seen, expected, "every publication, in order of first arrival");
    mqtt.shutdown();
}

#[test]
fn cut_connection_fires_the_will_then_reconnects_and_still_takes_desired() {
    if !broker_up() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let device = Device::new(tmp.path(), tmp.path(), &image_bytes(64 * 1024, 3));
    let identity = Identity::load_or_create(&device.data_dir, &NoCrash).unwrap();
    let id = identity.device_id().clone();
    let device_key = VerifyingKey::from_bytes(&identity.public_key()).unwrap();
    let server_key = SigningKey::from_bytes(&[42; 32]);
    let server_pub = server_key.verifying_key();

    let (watch, mut connection) = Client::new(MqttOptions::new(format!("watch-{id}"), "127.0.0.1", 1883), 16);
    watch
        .subscribe(format!("halyard/v1/devices/{id}/#"), QoS::AtLeastOnce)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => tx.send(None).unwrap_or(()),
                Ok(MqttEvent::Incoming(Packet::Publish(p))) if !p.payload.is_empty() => {
                    if tx.send(Some(Envelope::decode(&p.payload).unwrap())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap().is_none(),
        "subscribed"
    );

    let proxy = Proxy::default();
    let settings = MqttSettings {
        host: "127.0.0.1".into(),
        port: proxy.clone().start(),
        tls_ca: None,
        credentials: None,
        keep_alive: Duration::from_secs(5),
        tick: Duration::from_millis(50),
        reconnect_min: Duration::from_millis(200),
        reconnect_max: Duration::from_secs(1),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let agent = {
        let (stop, seq) = (
            stop.clone(),
            SeqCounter::open(&device.data_dir, Arc::new(NoCrash)).unwrap(),
        );
        let (id, key, device) = (id.clone(), identity.signing_key(), device.clone());
        std::thread::spawn(move || {
            let clock = Arc::new(device.clock.clone());
            let mut link = Link::connect(&settings, id, key, seq, server_pub, clock);
            let rail = PowerRail::always_on();
            device.bootloader(&rail).unwrap();
            let (mut driver, _) = device.start(&rail).unwrap();
            link.serve(&mut driver, Duration::from_millis(50), &stop).unwrap();
            link.shutdown();
        })
    };
    let next = |kind: Kind| loop {
        let env = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("message")
            .unwrap();
        if env.kind == Kind::Desired {
            continue; // the test's own message
        }
        env.verify(&device_key).unwrap();
        if env.kind == kind {
            return env;
        }
    };
    let presence = |env: &Envelope| env.open::<Presence>(&device_key).unwrap().online;
    let first = next(Kind::Presence);
    assert!(presence(&first));
    proxy.cut();
    let will = next(Kind::Presence);
    assert!(!presence(&will), "the broker fired the offline will");
    let again = next(Kind::Presence);
    assert!(presence(&again), "online again after reconnecting");
    assert!(
        first.seq < will.seq && will.seq < again.seq,
        "{} {} {}",
        first.seq,
        will.seq,
        again.seq
    );

    // Resubscribed: a desired state sent now still arrives and drives the machine (the artifact does
    // not exist, so the agent reports Downloading, then Failed, both for this rollout).
    let missing = halyard_protocol::Artifact {
        url: "https://server.invalid/v1/artifacts/missing".into(),
        sha256: halyard_protocol::Sha256::of(b"missing"),
        size: 10,
    };
    let desired = Desired {
        rollout: Some("after-cut".into()),
        action: install("2.0.0", &missing, vec![]),
    };
    let env = Envelope::seal(&desired, &id, 1, &server_key).unwrap();
    watch
        .publish(
            Topic::Desired.for_device(&id),
            QoS::AtLeastOnce,
            false,
            env.encode(),
        )
        .unwrap();
    // The install's first transitions come in one `events` envelope.
    let events: halyard_protocol::Events = next(Kind::Events).open(&device_key).unwrap();
    let event: &Event = &events.events[0];
    assert_eq!(event.rollout.as_deref(), Some("after-cut"), "{event:?}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    agent.join().expect("agent loop ended cleanly after the cut");
    for topic in [Topic::Presence, Topic::Report] {
        watch
            .publish(topic.for_device(&id), QoS::AtLeastOnce, true, Vec::<u8>::new())
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
}
