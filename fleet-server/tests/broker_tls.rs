//! The server's own MQTT connection over TLS (`mqtts://`) to an external broker: a Mosquitto the
//! test starts with only a TLS listener on its own loopback port, its certificate (for 127.0.0.1)
//! issued by a CA made here with rcgen. Trusting that CA, the server connects and ingests a report a
//! device publishes over TLS; trusting another CA, every handshake fails (counted on `/metrics`)
//! and it never connects; `mqtts://` without a CA file is refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use halyard_node::driver::Outgoing;
use halyard_node::transport::codec;
use halyard_node::transport::mqtt::{Inbound, Mqtt};
use halyard_protocol::{AgentState, Report, Slot, SlotReport};
use halyard_server::background::Background;
use halyard_server::settings::{BrokerSettings, Settings};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::{Mosquitto, TIMEOUT, free_port};

/// A CA named `name`: its certificate written to `dir/<name>.pem`, and its issuer.
fn make_ca(dir: &Path, name: &str) -> (PathBuf, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let cert = params.self_signed(&key).unwrap();
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, cert.pem()).unwrap();
    (path, Issuer::new(params, key))
}

/// The broker's certificate and key for 127.0.0.1, signed by `issuer`: (cert, key) paths.
fn broker_cert(dir: &Path, issuer: &Issuer<'static, KeyPair>) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "broker");
    let cert = params.signed_by(&key, issuer).unwrap();
    let (cert_path, key_path) = (dir.join("broker.pem"), dir.join("broker-key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// Mosquitto with one TLS listener on 127.0.0.1:`port` (anonymous logins: the TLS is under test).
fn start_mosquitto(dir: &Path, port: u16, cert: &Path, key: &Path) -> Mosquitto {
    let conf = dir.join("mosquitto.conf");
    let mut text = format!(
        "listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\nallow_anonymous true\npersistence false\n",
        cert.display(),
        key.display()
    );
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
    let broker = Mosquitto(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < TIMEOUT, "mosquitto does not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    broker
}

/// A server whose broker is `mqtts://127.0.0.1:<port>`, trusting `ca`.
fn server(dir: &Path, port: u16, ca: Option<&Path>) -> Result<Background, String> {
    let url = format!("mqtts://127.0.0.1:{port}");
    let mut settings = Settings::new(dir, BrokerSettings::External { url });
    settings.broker_ca = ca.map(Path::to_path_buf);
    Background::start(settings).map_err(|e| e.to_string())
}

/// `halyard_<name>_total` on the server's `/metrics`.
fn counter(bg: &Background, name: &str) -> u64 {
    let text = ureq::get(format!("{}/metrics", bg.url()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let prefix = format!("halyard_{name}_total ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

fn wait_for_counter(bg: &Background, name: &str, at_least: u64) {
    let start = Instant::now();
    while counter(bg, name) < at_least {
        assert!(start.elapsed() < TIMEOUT, "{name} stayed below {at_least}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report() -> Report {
    let slot = SlotReport {
        version: Some("1.0.0".into()),
        image_sha256: None,
        bootable: true,
        successful: true,
    };
    Report {
        at: 1,
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

/// Enrolls a device, connects it to the broker over TLS (trusting `ca`) and publishes one report.
fn device_reports(bg: &Background, dir: &Path, port: u16, ca: &Path) {
    let (identity, record) = support::enroll_device(bg, dir, &support::enroll_token(bg));
    let settings = support::mqtt_settings("127.0.0.1", port, Some(ca.to_path_buf()), &record);
    let mqtt = Mqtt::start(
        &settings,
        identity.device_id().as_str(),
        "unused/topic",
        Box::new(|| None),
    );
    let start = Instant::now();
    while mqtt.recv(Duration::from_millis(50)) != Some(Inbound::Connected) {
        assert!(start.elapsed() < TIMEOUT, "the device never connected over TLS");
    }
    let msg = Outgoing::Report(report());
    let sealed = codec::seal(&msg, identity.device_id(), 1, &identity.signing_key()).unwrap();
    mqtt.publish(sealed).unwrap();
    let client = support::admin(bg);
    support::wait_for_device(&client, identity.device_id().as_str(), "report over mqtts", |d| {
        !d["report"].is_null()
    });
    mqtt.shutdown();
}

#[test]
fn the_server_connects_over_tls_and_ingests() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, issuer) = make_ca(tmp.path(), "broker-ca");
    let (cert, key) = broker_cert(tmp.path(), &issuer);
    let port = free_port();
    let _broker = start_mosquitto(tmp.path(), port, &cert, &key);
    let bg = server(&tmp.path().join("server"), port, Some(&ca)).unwrap();
    wait_for_counter(&bg, "broker_connects", 1);
    device_reports(&bg, &tmp.path().join("device"), port, &ca);
    assert_eq!(counter(&bg, "messages_ingested"), 1);
    assert_eq!(counter(&bg, "broker_errors"), 0, "no failed attempt");
}

#[test]
fn a_broker_certificate_from_another_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, issuer) = make_ca(tmp.path(), "broker-ca");
    let (other_ca, _) = make_ca(tmp.path(), "other-ca");
    let (cert, key) = broker_cert(tmp.path(), &issuer);
    let port = free_port();
    let _broker = start_mosquitto(tmp.path(), port, &cert, &key);
    let bg = server(&tmp.path().join("server"), port, Some(&other_ca)).unwrap();
    // The first attempts are made at once and then after 200 ms, 400 ms: three failures prove retries.
    wait_for_counter(&bg, "broker_errors", 3);
    assert_eq!(
        counter(&bg, "broker_connects"),
        0,
        "connected despite an untrusted certificate"
    );
}

#[test]
fn mqtts_without_a_ca_file_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let err = server(tmp.path(), free_port(), None).expect_err("started without a broker CA");
    assert!(err.contains("no broker CA file"), "{err}");
}
