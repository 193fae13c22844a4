//! Broker ACLs against a real Mosquitto (the `mosquitto` binary, 2.x) that this test starts on its
//! own free loopback port with the files the server generates (`--mosquitto-dir`), reloaded by the
//! server with SIGHUP after each enrollment. Two devices enroll through the agent's own enrollment
//! code and get per-device credentials; then, with real MQTT clients:
//! - device A cannot publish on B's topics: the server account (allowed everything) and B's own
//!   subscription see nothing of it, while A's publication on its own topic arrives;
//! - device A gets nothing published on B's `desired` although it subscribed (Mosquitto 2.0 with an
//!   `acl_file` acknowledges every SUBSCRIBE and filters each message at delivery);
//! - a wrong password, an unknown user and an anonymous client are refused at CONNECT;
//! - the agent's MQTT link logs in with its enrollment credentials and the server ingests its
//!   presence through Mosquitto.
//!
//! `halyardctl broker mosquitto-config` writes the same files for a Mosquitto the operator runs.
//!
//! "Nothing arrived" is shown without timed waits: Mosquitto delivers one publisher's messages to a
//! subscriber in order, so once a later marker message arrives, an earlier one would have too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use halyard_server::background::Background;
use halyard_server::settings::{BrokerSettings, MosquittoSync, Settings};
use rumqttc::{Client, ConnectReturnCode, Connection, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use support::{Mosquitto, TIMEOUT, enroll_device, enroll_token, free_port};

fn have_mosquitto() -> bool {
    let found = Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("SKIPPED: no mosquitto binary (Debian package `mosquitto`)");
    }
    found
}

/// Waits for the server's first write of the files, then starts Mosquitto on them.
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
        // Started as root, Mosquitto drops to the `mosquitto` user, which cannot read a private
        // temporary directory; keep it as root here (a real install shares a group instead).
        text.push_str("user root\n");
    }
    std::fs::write(&conf, text).unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
        .spawn()
        .unwrap();
    std::fs::write(pid_file, child.id().to_string()).unwrap();
    let broker = Mosquitto(child);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < TIMEOUT, "mosquitto does not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    broker
}

/// A connected client, or the CONNACK code that refused it.
fn connect(
    port: u16,
    id: &str,
    login: Option<(&str, &str)>,
) -> Result<(Client, Connection), ConnectReturnCode> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((user, password)) = login {
        opts.set_credentials(user, password);
    }
    let (client, mut conn) = Client::new(opts, 16);
    loop {
        match conn.recv_timeout(TIMEOUT).expect("an answer to CONNECT") {
            Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok((client, conn)),
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(code),
            Err(e) => panic!("{id}: {e}"),
        }
    }
}

/// Retries `connect` while the server's reload has not reached Mosquitto yet.
fn connect_when_loaded(port: u16, id: &str, user: &str, password: &str) -> (Client, Connection) {
    let start = Instant::now();
    loop {
        match connect(port, id, Some((user, password))) {
            Ok(c) => return c,
            Err(code) if start.elapsed() < TIMEOUT => {
                eprintln!("{id}: {code:?}, waiting for the reload");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(code) => panic!("{id} never got in: {code:?}"),
        }
    }
}

/// The next publication (topic, payload); fails on timeout.
fn next_publish(conn: &mut Connection) -> (String, Vec<u8>) {
    let start = Instant::now();
    loop {
        let left = TIMEOUT.saturating_sub(start.elapsed());
        match conn.recv_timeout(left).expect("a publication in time") {
            Ok(Event::Incoming(Packet::Publish(p))) => return (p.topic.clone(), p.payload.to_vec()),
            Ok(_) => {}
            Err(e) => panic!("connection: {e}"),
        }
    }
}

/// Subscribes and returns the broker's SUBACK codes.
fn subscribe(client: &Client, conn: &mut Connection, filter: &str) -> Vec<SubscribeReasonCode> {
    client.subscribe(filter, QoS::AtLeastOnce).unwrap();
    loop {
        match conn.recv_timeout(TIMEOUT).expect("SUBACK in time") {
            Ok(Event::Incoming(Packet::SubAck(ack))) => return ack.return_codes,
            Ok(_) => {}
            Err(e) => panic!("subscribe {filter}: {e}"),
        }
    }
}

/// Polls `conn` until `n` PUBACKs arrived (a sync client sends only while its connection is polled).
fn flush(conn: &mut Connection, n: usize) {
    let (start, mut acked) = (Instant::now(), 0);
    while acked < n {
        let left = TIMEOUT.saturating_sub(start.elapsed());
        match conn.recv_timeout(left).expect("PUBACKs in time") {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("connection: {e}"),
        }
    }
}

/// Drives a connection on a thread (for clients that only publish).
fn drive(mut conn: Connection) {
    std::thread::spawn(move || for _ in conn.iter() {});
}

fn topic(device: &str, name: &str) -> String {
    format!("halyard/v1/devices/{device}/{name}")
}

#[test]
fn mosquitto_confines_each_device_to_its_own_topics() {
    if !have_mosquitto() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (port, files, pid_file) = (
        free_port(),
        tmp.path().join("mosquitto"),
        tmp.path().join("mosquitto.pid"),
    );
    let mut settings = Settings::new(
        tmp.path().join("data"),
        BrokerSettings::External {
            url: format!("mqtt://127.0.0.1:{port}"),
        },
    );
    settings.mosquitto = Some(MosquittoSync {
        dir: files.clone(),
        pid_file: Some(pid_file.clone()),
    });
    let bg = Background::start(settings).unwrap();
    let _mosquitto = start_mosquitto(&files, port, &pid_file);
    let server_password = std::fs::read_to_string(tmp.path().join("data/broker-password")).unwrap();
    let server_login = ("halyard-server", server_password.trim());

    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a_identity, a) = enroll_device(&bg, &a_dir, &bg.started.enroll_token);
    let (_, b) = enroll_device(&bg, &b_dir, &enroll_token(&bg));
    let (a_id, b_id) = (a.answer.device_id.clone(), b.answer.device_id.clone());
    let a_pass = a.answer.mqtt_password.clone().expect("a password at enrollment");
    let b_pass = b.answer.mqtt_password.clone().expect("a password at enrollment");
    assert_eq!(a.answer.mqtt_username.as_deref(), Some(a_id.as_str()));
    let passwords = std::fs::read_to_string(files.join("password_file")).unwrap();
    assert!(
        !passwords.contains(&a_pass),
        "the server stores hashes, not passwords"
    );

    // Refused at CONNECT: wrong password, unknown user, anonymous.
    let b_client = connect_when_loaded(port, "b", &b_id, &b_pass);
    assert_eq!(
        connect(port, "a-wrong", Some((&a_id, "not-the-password"))).err(),
        Some(ConnectReturnCode::NotAuthorized)
    );
    assert!(connect(port, "nobody", Some(("dev-unknown", "x"))).is_err());
    assert!(connect(port, "anon", None).is_err());

    let (observer, mut observer_conn) = connect_when_loaded(port, "observer", server_login.0, server_login.1);
    assert_eq!(
        subscribe(&observer, &mut observer_conn, "halyard/v1/#"),
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let (b, mut b_conn) = b_client;
    assert_eq!(
        subscribe(&b, &mut b_conn, &topic(&b_id, "desired")),
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let (a_client, mut a_conn) = connect_when_loaded(port, "a", &a_id, &a_pass);

    // A subscribes to B's desired. Mosquitto 2.0's acl_file grants every SUBSCRIBE and checks read
    // access per message at delivery instead (so no 0x80 here; the dynamic-security plugin would
    // refuse it): what matters is below, that nothing published there reaches A.
    let codes = subscribe(&a_client, &mut a_conn, &topic(&b_id, "desired"));
    eprintln!("SUBACK for A's subscription to B's desired: {codes:?}");
    assert_eq!(
        subscribe(&a_client, &mut a_conn, &topic(&a_id, "desired")),
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    // A spoofs B's report and B's desired, then publishes a marker on its own report.
    for name in ["report", "desired", "events"] {
        a_client
            .publish(topic(&b_id, name), QoS::AtLeastOnce, false, b"spoof".to_vec())
            .unwrap();
    }
    a_client
        .publish(
            topic(&a_id, "report"),
            QoS::AtLeastOnce,
            false,
            b"marker".to_vec(),
        )
        .unwrap();
    // Mosquitto acknowledges denied QoS 1 publications too (and drops them).
    flush(&mut a_conn, 4);
    // The server account sees A's marker and nothing of the spoofs before it (drop the server's own
    // retained/republished traffic, which is not from A).
    loop {
        let (t, payload) = next_publish(&mut observer_conn);
        assert_ne!(payload, b"spoof", "a spoofed message on {t} got through");
        if payload == b"marker" {
            assert_eq!(t, topic(&a_id, "report"));
            break;
        }
    }
    // The server publishes on B's desired and then on A's: B's first message is the server's (A's
    // spoof never reached B), and A's first is on its own topic (nothing from B's).
    observer
        .publish(
            topic(&b_id, "desired"),
            QoS::AtLeastOnce,
            false,
            b"for-b".to_vec(),
        )
        .unwrap();
    observer
        .publish(
            topic(&a_id, "desired"),
            QoS::AtLeastOnce,
            false,
            b"for-a".to_vec(),
        )
        .unwrap();
    flush(&mut observer_conn, 2);
    assert_eq!(
        next_publish(&mut b_conn),
        (topic(&b_id, "desired"), b"for-b".to_vec())
    );
    assert_eq!(
        next_publish(&mut a_conn),
        (topic(&a_id, "desired"), b"for-a".to_vec())
    );
    drive(observer_conn);

    // The agent's own link logs in with the enrollment credentials; the server (its own account)
    // ingests the signed presence through Mosquitto.
    support::agent_goes_online(&bg, port, &a_dir, &a_identity, &a);
}

/// `halyardctl broker mosquitto-config` writes the same files for a Mosquitto the operator runs:
/// durably, the password file readable by its group only; a file it cannot write is a local-file
/// error (exit code 2) naming the file.
#[test]
fn halyardctl_writes_the_mosquitto_files() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let bg = Background::start(Settings::new(
        tmp.path().join("data"),
        BrokerSettings::Embedded {
            listen: "127.0.0.1:0".parse().unwrap(),
        },
    ))
    .unwrap();
    let run = |out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_halyardctl"))
            .args(["broker", "mosquitto-config", "--out"])
            .arg(out)
            .env("HALYARD_SERVER", bg.url())
            .env("HALYARD_TOKEN", &bg.admin_token)
            .output()
            .unwrap()
    };
    let out = tmp.path().join("mosquitto");
    let done = run(&out);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["acl_file", "mosquitto.conf", "password_file"],
        "no temporary files left"
    );
    let mode = std::fs::metadata(out.join("password_file"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o007, 0, "password_file is not world-readable: {mode:o}");
    let conf = std::fs::read_to_string(out.join("mosquitto.conf")).unwrap();
    assert!(
        conf.contains(&out.join("acl_file").display().to_string()),
        "{conf}"
    );

    let blocked = tmp.path().join("blocked");
    std::fs::create_dir_all(blocked.join("acl_file")).unwrap();
    let refused = run(&blocked);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("acl_file"), "{stderr}");
}
