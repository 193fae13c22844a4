//! TLS end to end: a server that made its own fleet CA on first start serves HTTPS and MQTTS (a TLS
//! front on the embedded broker). The agent's own code (node library: enrollment, the MQTT transport
//! with rustls/ring) enrolls over HTTPS trusting only that CA, gets the CA, an `mqtts://` broker and
//! its MQTT credentials, connects over MQTTS with the pinned CA and publishes a signed report the
//! server ingests. A second server (its own, different CA) is refused by a device that pinned the
//! first one, on HTTPS and on MQTTS, with a certificate error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use halyard_node::config::MqttSettings;
use halyard_node::driver::Outgoing;
use halyard_node::enroll::Enrollment;
use halyard_node::identity::Identity;
use halyard_node::transport::api::ServerApi;
use halyard_node::transport::mqtt::{Inbound, Mqtt};
use halyard_protocol::{AgentState, Report, Slot, SlotReport};
use halyard_server::background::Background;
use halyard_server::settings::{BrokerSettings, Settings};
use halyard_server::tls::TlsSettings;
use support::TIMEOUT;

fn tls_server(dir: &Path) -> Background {
    let mut settings = Settings::new(
        dir,
        BrokerSettings::Embedded {
            listen: "127.0.0.1:0".parse().unwrap(),
        },
    );
    settings.tls = Some(TlsSettings::SelfSigned {
        names: vec!["localhost".into(), "127.0.0.1".into()],
    });
    settings.mqtts = Some("127.0.0.1:0".parse().unwrap());
    Background::start(settings).unwrap()
}

fn enroll_over_https(bg: &Background, ca: &Path, dir: &Path) -> Result<(Identity, Enrollment), String> {
    support::try_enroll(bg, dir, &bg.started.enroll_token, Some(ca)).map_err(|e| e.to_string())
}

fn mqtts_settings(record: &Enrollment, dir: &Path) -> MqttSettings {
    let rest = record
        .answer
        .broker
        .strip_prefix("mqtts://")
        .expect("an mqtts:// broker");
    let (host, port) = rest.rsplit_once(':').unwrap();
    support::mqtt_settings(host, port.parse().unwrap(), record.ca_file(dir), record)
}

fn report() -> Report {
    let slot = |v: &str| SlotReport {
        version: Some(v.into()),
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
        slot_a: slot("1.0.0"),
        slot_b: slot("0.9.0"),
        state: AgentState::Committed {
            version: "1.0.0".into(),
        },
        last_error: None,
        health: None,
    }
}

/// The TLS handshake error a client pinned to `ca` gets from `addr` (`None`: the handshake worked).
fn handshake_error(ca: &Path, addr: &str) -> Option<String> {
    let config = halyard_node::transport::mqtt::tls_config(ca).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut sock) {
            return Some(e.to_string());
        }
    }
    None
}

#[test]
fn agent_enrolls_and_reports_over_https_and_mqtts_with_the_fleet_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let bg = tls_server(&tmp.path().join("server"));
    assert!(bg.url().starts_with("https://"), "{}", bg.url());
    let ca = tmp.path().join("server/tls/ca.pem");
    let device_dir = tmp.path().join("device");

    let (identity, record) = enroll_over_https(&bg, &ca, &device_dir).unwrap();
    assert!(
        record.answer.broker.starts_with("mqtts://"),
        "{}",
        record.answer.broker
    );
    assert_eq!(
        record.answer.server_ca.as_deref(),
        Some(std::fs::read_to_string(&ca).unwrap().as_str()),
        "the device is handed the fleet CA"
    );
    let pinned = record.ca_file(&device_dir).unwrap();
    assert!(pinned.exists());

    // MQTTS with the pinned CA and the enrollment credentials; a signed report reaches the server.
    let mqtt = Mqtt::start(
        &mqtts_settings(&record, &device_dir),
        &record.answer.device_id,
        &format!("halyard/v1/devices/{}/desired", record.answer.device_id),
        Box::new(|| None),
    );
    let start = Instant::now();
    while mqtt.recv(Duration::from_millis(100)) != Some(Inbound::Connected) {
        assert!(start.elapsed() < TIMEOUT, "no MQTTS connection");
    }
    let publication = halyard_node::transport::codec::seal(
        &Outgoing::Report(report()),
        identity.device_id(),
        1,
        &identity.signing_key(),
    )
    .unwrap();
    mqtt.publish(publication).unwrap();
    let admin = halyard_server::ctl::Client::with_ca(&bg.url(), Some(bg.admin_token.clone()), &ca).unwrap();
    let device = support::wait_for_device(
        &admin,
        &record.answer.device_id,
        "the report never arrived",
        |device| !device["report"].is_null(),
    );
    assert_eq!(device["device"]["report"]["slot_a"]["version"], "1.0.0");
    mqtt.shutdown();

    // The HTTPS fallback works with the pinned CA too.
    let api = ServerApi::new(&bg.url(), &support::http(Some(&pinned))).unwrap();
    assert_eq!(api.desired(identity.device_id()).unwrap(), None);

    // Another server with its own CA: the pinned device refuses its HTTPS and MQTTS certificates.
    let other = tls_server(&tmp.path().join("other"));
    let err = enroll_over_https(&other, &pinned, &tmp.path().join("device2")).unwrap_err();
    eprintln!("HTTPS with another CA: {err}");
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    let other_mqtts = halyard_node::enroll::load(&tmp.path().join("device2")).unwrap();
    assert!(other_mqtts.is_none(), "nothing stored after a refused enrollment");
    let (_, other_record) = enroll_over_https(
        &other,
        &tmp.path().join("other/tls/ca.pem"),
        &tmp.path().join("device3"),
    )
    .unwrap();
    let addr = other_record
        .answer
        .broker
        .trim_start_matches("mqtts://")
        .to_owned();
    let err = handshake_error(&pinned, &addr).expect("the handshake must fail");
    eprintln!("MQTTS with another CA: {err}");
    assert!(
        err.contains("UnknownIssuer") || err.contains("BadSignature"),
        "{err}"
    );
    assert_eq!(handshake_error(&tmp.path().join("other/tls/ca.pem"), &addr), None);
}
