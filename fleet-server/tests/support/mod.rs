//! Helpers shared by the tests that run the agent's own code against a real server: enrolling a
//! device, its MQTT settings, and waiting until the server sees what the device sent. Each test binary
//! uses only some of them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_node::config::{HttpSettings, MqttSettings};
use halyard_node::enroll::{self, Enrollment, Facts};
use halyard_node::faults::NoCrash;
use halyard_node::identity::{Identity, SeqCounter};
use halyard_node::transport::api::ServerApi;
use halyard_server::background::Background;
use halyard_server::ctl::Client;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The agent's HTTP settings, trusting `ca` (a PEM file) when given, else the system roots.
pub fn http(ca: Option<&Path>) -> HttpSettings {
    HttpSettings {
        ca_file: ca.map(Path::to_path_buf),
        max_artifact_bytes: 1 << 20,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
    }
}

/// Enrolls a new device in `dir` through the agent's enrollment code with `token`, trusting `ca`.
pub fn try_enroll(
    bg: &Background,
    dir: &Path,
    token: &str,
    ca: Option<&Path>,
) -> Result<(Identity, Enrollment), enroll::EnrollError> {
    std::fs::create_dir_all(dir).unwrap();
    let identity = Identity::load_or_create(dir, &NoCrash).unwrap();
    let api = ServerApi::new(&bg.url(), &http(ca)).unwrap();
    let facts = Facts {
        product: "test".into(),
        hardware_class: "hw".into(),
    };
    let record = enroll::enroll(&api, &bg.url(), &identity, token, &facts, dir, &NoCrash)?;
    Ok((identity, record))
}

/// Enrolls a new device in `dir` over plain HTTP with `token`.
pub fn enroll_device(bg: &Background, dir: &Path, token: &str) -> (Identity, Enrollment) {
    try_enroll(bg, dir, token, None).unwrap()
}

/// A fresh one-time enrollment token from the admin API.
pub fn enroll_token(bg: &Background) -> String {
    let answer = admin(bg)
        .send_json(
            ureq::http::Method::POST,
            "/api/v1/enroll-tokens",
            &serde_json::json!({}),
        )
        .unwrap();
    answer["token"].as_str().unwrap().to_owned()
}

/// The admin's API client (plain HTTP).
pub fn admin(bg: &Background) -> Client {
    Client::new(&bg.url(), Some(bg.admin_token.clone()))
}

/// The agent's MQTT settings for `host:port` with its enrollment credentials (and pinned CA, if any).
pub fn mqtt_settings(
    host: &str,
    port: u16,
    tls_ca: Option<std::path::PathBuf>,
    record: &Enrollment,
) -> MqttSettings {
    MqttSettings {
        host: host.to_owned(),
        port,
        tls_ca,
        credentials: record.credentials(),
        keep_alive: Duration::from_secs(30),
        tick: Duration::from_millis(50),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
    }
}

/// Polls the device's API record until `done` holds for it; fails after `TIMEOUT` naming `what`.
pub fn wait_for_device(
    client: &Client,
    device_id: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let device = client.get(&format!("/api/v1/devices/{device_id}")).unwrap();
        if done(&device["device"]) {
            return device;
        }
        assert!(start.elapsed() < TIMEOUT, "{what}: {device}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connects the agent's MQTT link (enrollment credentials, plain MQTT on 127.0.0.1:`port`) and waits
/// until the server, which ingests its signed presence, shows the device online.
pub fn agent_goes_online(bg: &Background, port: u16, dir: &Path, identity: &Identity, record: &Enrollment) {
    let settings = mqtt_settings("127.0.0.1", port, None, record);
    let link = halyard_node::app::link::Link::connect(
        &settings,
        identity.device_id().clone(),
        identity.signing_key(),
        SeqCounter::open(dir, Arc::new(NoCrash)).unwrap(),
        record.verifying_key().unwrap(),
        Arc::new(halyard_node::clock::SystemClock),
    );
    wait_for_device(
        &admin(bg),
        &record.answer.device_id,
        "the server never saw the agent online",
        |device| device["online"] == serde_json::Value::Bool(true),
    );
    link.shutdown();
}

/// A Mosquitto process a test started on its own port; killed and reaped when dropped.
pub struct Mosquitto(pub std::process::Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
