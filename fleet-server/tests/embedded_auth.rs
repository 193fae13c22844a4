//! The embedded broker (rumqttd) with `embedded_broker_auth`: a device enrolled through the agent's
//! own code logs in with its issued credentials and the server (its own account) ingests its
//! presence; a wrong password, an unknown user and a client without credentials are refused.
//! rumqttd closes the connection without a CONNACK on a refused login.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_node::config::{HttpSettings, MqttSettings};
use halyard_node::enroll::{self, Facts};
use halyard_node::faults::NoCrash;
use halyard_node::identity::{Identity, SeqCounter};
use halyard_server::background::Background;
use halyard_server::settings::{BrokerSettings, Settings};
use rumqttc::{Client, Event, MqttOptions, Packet};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a client with `login` gets a CONNACK from the broker on `port`.
fn logs_in(port: u16, login: Option<(&str, &str)>) -> bool {
    let mut opts = MqttOptions::new("probe", "127.0.0.1", port);
    if let Some((user, password)) = login {
        opts.set_credentials(user, password);
    }
    let (_client, mut conn) = Client::new(opts, 4);
    loop {
        match conn.recv_timeout(TIMEOUT).expect("an answer in time") {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                return ack.code == rumqttc::ConnectReturnCode::Success;
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

#[test]
fn embedded_broker_checks_the_issued_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let mut settings = Settings::new(
        tmp.path().join("server"),
        BrokerSettings::Embedded {
            listen: "127.0.0.1:0".parse().unwrap(),
        },
    );
    settings.embedded_broker_auth = true;
    let bg = Background::start(settings).unwrap();
    let port: u16 = bg.started.broker.rsplit_once(':').unwrap().1.parse().unwrap();

    let dir = tmp.path().join("device");
    std::fs::create_dir_all(&dir).unwrap();
    let identity = Identity::load_or_create(&dir, &NoCrash).unwrap();
    let http = HttpSettings {
        ca_file: None,
        max_artifact_bytes: 1 << 20,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
    };
    let api = halyard_node::transport::api::ServerApi::new(&bg.url(), &http).unwrap();
    let facts = Facts {
        product: "auth-test".into(),
        hardware_class: "hw".into(),
    };
    let record = enroll::enroll(
        &api,
        &bg.url(),
        &identity,
        &bg.started.enroll_token,
        &facts,
        &dir,
        &NoCrash,
    )
    .unwrap();
    let (user, password) = (
        record.mqtt_username.clone().unwrap(),
        record.mqtt_password.clone().unwrap(),
    );

    assert!(logs_in(port, Some((&user, &password))), "the issued credentials");
    assert!(!logs_in(port, Some((&user, "wrong"))), "a wrong password");
    assert!(
        !logs_in(port, Some(("dev-00000000000000000000000000000000", &password))),
        "an unknown user"
    );
    assert!(!logs_in(port, None), "no credentials");

    // The agent's link with its enrollment credentials; the server's own client ingests presence.
    let settings = MqttSettings {
        host: "127.0.0.1".into(),
        port,
        tls_ca: None,
        credentials: record.credentials(),
        keep_alive: Duration::from_secs(30),
        tick: Duration::from_millis(50),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
    };
    let link = halyard_node::app::link::Link::connect(
        &settings,
        identity.device_id().clone(),
        identity.signing_key(),
        SeqCounter::open(&dir, Arc::new(NoCrash)).unwrap(),
        record.verifying_key().unwrap(),
        Arc::new(halyard_node::clock::SystemClock),
    );
    let admin = halyard_server::ctl::Client::new(&bg.url(), Some(bg.admin_token.clone()));
    let start = Instant::now();
    loop {
        let device = admin
            .get(&format!("/api/v1/devices/{}", record.device_id))
            .unwrap();
        if device["device"]["online"] == serde_json::Value::Bool(true) {
            break;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "the server never saw the agent online: {device}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    link.shutdown();
}
