//! Shared subscriptions against a real Mosquitto (2.x) the test starts on its own port with the
//! password and ACL files the server generates: two server replicas on one PostgreSQL database, both
//! subscribed as the group `halyard` (`$share/halyard/halyard/v1/devices/+/report`, ...). A device
//! publishes N signed messages, reports and events in turn; the replicas together handle each exactly
//! once (ingested, or a report dropped as stale when a newer one was stored first: Mosquitto deals
//! messages round-robin, so one device's messages are split between replicas and reach the store out
//! of order) and each replica gets some. Every event is stored exactly once all the same (events are
//! kept by seq, not behind a high-water mark). The control without a group shows what the option
//! saves: every replica handles every message (2N), and still each event is stored once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use halyard_node::driver::Outgoing;
use halyard_node::identity::Identity;
use halyard_node::transport::codec;
use halyard_node::transport::mqtt::{Inbound, Mqtt};
use halyard_protocol::{AgentState, Event, Report, Slot, SlotReport};
use halyard_server::background::Background;
use halyard_server::settings::{BrokerAccount, BrokerSettings, Database, MosquittoSync, Settings};
use halyard_server::store::Store;
use halyard_server::store::postgres::{PgStore, temp::TempDatabase};
use support::{Mosquitto, TIMEOUT, free_port};

const N: u64 = 200;

/// Starts Mosquitto on `port` with the files the first replica wrote into `dir`.
fn start_mosquitto(dir: &Path, port: u16, pid_file: &Path) -> Mosquitto {
    let start = Instant::now();
    while !dir.join("acl_file").exists() {
        assert!(
            start.elapsed() < TIMEOUT,
            "the server never wrote {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let conf = dir.join("mosquitto.conf");
    let mut text = halyard_server::broker_auth::mosquitto_conf(dir, Some(port), None);
    if rustix::process::geteuid().is_root() {
        text.push_str("user root\n");
    }
    std::fs::write(&conf, text).unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
        .spawn()
        .expect("the mosquitto binary (Debian package `mosquitto`)");
    std::fs::write(pid_file, child.id().to_string()).unwrap();
    let broker = Mosquitto(child);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < TIMEOUT, "mosquitto does not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    broker
}

fn replica(dir: &Path, port: u16, db: &str, group: Option<&str>, sync: Option<MosquittoSync>) -> Background {
    let url = format!("mqtt://127.0.0.1:{port}");
    let mut settings = Settings::new(dir, BrokerSettings::External { url });
    settings.database = Database::Postgres { url: db.to_owned() };
    settings.broker_account = Some(BrokerAccount {
        user: "halyard-server".into(),
        password: "replicas-share-this".into(),
    });
    settings.mqtt_shared_group = group.map(str::to_owned);
    settings.mosquitto = sync;
    Background::start(settings).unwrap()
}

/// Messages a replica has handled: ingested, stale or rejected (from its `/metrics`).
fn handled(bg: &Background) -> u64 {
    counter(bg, &["ingested", "duplicate", "rejected"])
}

/// The sum of `halyard_messages_<name>_total` for `names` on a replica's `/metrics`.
fn counter(bg: &Background, names: &[&str]) -> u64 {
    let text = ureq::get(format!("{}/metrics", bg.url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .filter(|l| {
            names
                .iter()
                .any(|n| l.starts_with(&format!("halyard_messages_{n}_total ")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn report(at: u64) -> Report {
    let slot = SlotReport {
        version: Some("1.0.0".into()),
        image_sha256: None,
        bootable: true,
        successful: true,
    };
    Report {
        at,
        agent_version: "0.1.0".into(),
        product: "test".into(),
        hardware_class: "hw".into(),
        active: Slot::A,
        slot_a: slot.clone(),
        slot_b: slot,
        state: AgentState::Idle,
        last_error: None,
        health: None,
    }
}

/// Until `done(a, b)` holds for the two replicas' handled counts; fails after `TIMEOUT`.
fn wait_until(a: &Background, b: &Background, what: &str, done: impl Fn(u64, u64) -> bool) -> (u64, u64) {
    let start = Instant::now();
    loop {
        let counts = (handled(a), handled(b));
        if done(counts.0, counts.1) {
            return counts;
        }
        assert!(start.elapsed() < TIMEOUT, "{what}: {counts:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The n-th message of the run: an event for odd `seq`, a report for even ones.
fn message(seq: u64) -> Outgoing {
    if seq % 2 == 1 {
        Outgoing::Event(Event {
            at: seq,
            rollout: Some("r1".into()),
            from: AgentState::Idle,
            to: AgentState::Idle,
            reason: Some(format!("event {seq}")),
        })
    } else {
        Outgoing::Report(report(seq))
    }
}

/// What one run saw: messages each replica handled, the event seqs sent and those stored.
struct Outcome {
    a: u64,
    b: u64,
    events_sent: Vec<u64>,
    events_stored: Vec<u64>,
}

/// A broker, two replicas on one database and an enrolled device connected over MQTT.
struct Rig {
    a: Background,
    b: Background,
    db: TempDatabase,
    identity: Identity,
    mqtt: Mqtt,
    _broker: Mosquitto,
    _tmp: tempfile::TempDir,
}

fn rig(group: Option<&str>) -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let db = TempDatabase::create("postgres://postgres@127.0.0.1:5432/postgres")
        .expect("PostgreSQL on 127.0.0.1:5432");
    let (port, files, pid) = (
        free_port(),
        tmp.path().join("mosquitto"),
        tmp.path().join("mosquitto.pid"),
    );
    let sync = MosquittoSync {
        dir: files.clone(),
        pid_file: Some(pid.clone()),
    };
    let a = replica(&tmp.path().join("a"), port, db.url(), group, Some(sync));
    let b = replica(&tmp.path().join("b"), port, db.url(), group, None);
    let broker = start_mosquitto(&files, port, &pid);
    let dir = tmp.path().join("device");
    let (identity, record) = support::enroll_device(&a, &dir, &support::enroll_token(&a));

    // The device's own MQTT transport; it gets in once the reload carries its password.
    let settings = support::mqtt_settings("127.0.0.1", port, None, &record);
    let mqtt = Mqtt::start(
        &settings,
        &record.answer.device_id,
        "unused/topic",
        Box::new(|| None),
    );
    let start = Instant::now();
    while mqtt.recv(Duration::from_millis(50)) != Some(Inbound::Connected) {
        assert!(start.elapsed() < TIMEOUT, "the device never connected");
    }
    Rig {
        a,
        b,
        db,
        identity,
        mqtt,
        _broker: broker,
        _tmp: tmp,
    }
}

/// Two replicas (with `group`), one device publishing N messages (reports and events in turn).
fn run(group: Option<&str>) -> Outcome {
    let Rig {
        a,
        b,
        db,
        identity,
        mqtt,
        _broker,
        _tmp,
    } = rig(group);
    let seal =
        |seq: u64| codec::seal(&message(seq), identity.device_id(), seq, &identity.signing_key()).unwrap();
    // Warm-up: publish reports until both replicas have handled something (both are subscribed),
    // each as often as it will be handled (once with a group, by both replicas without).
    let copies = if group.is_some() { 1 } else { 2 };
    let mut seq = 0;
    let before = loop {
        seq += 2;
        mqtt.publish(seal(seq)).unwrap();
        let counts = wait_until(&a, &b, "warm-up", |x, y| x + y >= copies * seq / 2);
        if counts.0 > 0 && counts.1 > 0 {
            break counts;
        }
    };
    let started = Instant::now();
    let first = seq + 1;
    for _ in 0..N {
        seq += 1;
        mqtt.publish(seal(seq)).unwrap();
    }
    let want = copies * N;
    wait_until(&a, &b, "all handled", |x, y| x + y - before.0 - before.1 >= want);
    eprintln!(
        "{N} messages handled by two replicas in {:?} (group {group:?})",
        started.elapsed()
    );
    // Nothing more arrives (a second copy would, within this time, in the control run).
    std::thread::sleep(Duration::from_millis(500));
    mqtt.shutdown();
    let refused = counter(&a, &["duplicate"]) + counter(&b, &["duplicate"]);
    eprintln!("of all {seq} messages, {refused} were refused as duplicate or stale");
    let store = PgStore::open(db.url(), 1).unwrap();
    let events = store.device_events(identity.device_id(), 10 * N as u32).unwrap();
    eprintln!("events: {} sent, {} stored", N / 2, events.len());
    Outcome {
        a: handled(&a) - before.0,
        b: handled(&b) - before.1,
        events_sent: (first..=seq).filter(|s| s % 2 == 1).collect(),
        events_stored: events.iter().map(|e| e.seq).collect(),
    }
}

#[test]
fn a_shared_group_hands_each_message_to_one_replica() {
    let out = run(Some("halyard"));
    let (a, b) = (out.a, out.b);
    eprintln!("shared group: replica A handled {a}, replica B {b}");
    assert_eq!(a + b, N, "each message handled exactly once");
    assert!(a > 0 && b > 0, "both replicas got some: {a} + {b}");
    assert_eq!(
        out.events_stored, out.events_sent,
        "every event stored exactly once, in seq order"
    );
}

#[test]
fn without_a_group_every_replica_handles_every_message() {
    let out = run(None);
    assert_eq!((out.a, out.b), (N, N));
    assert_eq!(out.events_stored, out.events_sent, "each event stored once");
}
