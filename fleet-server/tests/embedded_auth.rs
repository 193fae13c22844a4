//! The embedded broker (rumqttd) with `embedded_broker_auth`: a device enrolled through the agent's
//! own code logs in with its issued credentials and the server (its own account) ingests its
//! presence; a wrong password, an unknown user and a client without credentials are refused.
//! rumqttd closes the connection without a CONNACK on a refused login. A server set not to issue
//! broker credentials (the simulator's in-process broker) enrolls devices without any.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use halyard_server::background::Background;
use halyard_server::settings::{BrokerSettings, Settings};
use rumqttc::{Client, Event, MqttOptions, Packet};
use support::TIMEOUT;

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

/// A server in `dir/server` with the embedded broker on a free loopback port.
fn embedded(dir: &std::path::Path) -> Settings {
    Settings::new(
        dir.join("server"),
        BrokerSettings::Embedded {
            listen: "127.0.0.1:0".parse().unwrap(),
        },
    )
}

#[test]
fn embedded_broker_checks_the_issued_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let mut settings = embedded(tmp.path());
    settings.embedded_broker_auth = true;
    let bg = Background::start(settings).unwrap();
    let port: u16 = bg.started.broker.rsplit_once(':').unwrap().1.parse().unwrap();

    let dir = tmp.path().join("device");
    let (identity, record) = support::enroll_device(&bg, &dir, &bg.started.enroll_token);
    let (user, password) = (
        record.answer.mqtt_username.clone().unwrap(),
        record.answer.mqtt_password.clone().unwrap(),
    );

    assert!(logs_in(port, Some((&user, &password))), "the issued credentials");
    assert!(!logs_in(port, Some((&user, "wrong"))), "a wrong password");
    assert!(
        !logs_in(port, Some(("dev-00000000000000000000000000000000", &password))),
        "an unknown user"
    );
    assert!(!logs_in(port, None), "no credentials");

    // The agent's link with its enrollment credentials; the server's own client ingests presence.
    support::agent_goes_online(&bg, port, &dir, &identity, &record);
}

#[test]
fn without_broker_credentials_enrollment_issues_and_stores_none() {
    let tmp = tempfile::tempdir().unwrap();
    let mut settings = embedded(tmp.path());
    settings.broker_credentials = false;
    let bg = Background::start(settings).unwrap();
    let (identity, record) =
        support::enroll_device(&bg, &tmp.path().join("device"), &bg.started.enroll_token);
    assert_eq!(record.answer.mqtt_username, None);
    assert_eq!(record.answer.mqtt_password, None);
    assert_eq!(record.answer.device_id, identity.device_id().as_str());
    // Mosquitto's files hold the server's own account and no device.
    let files = support::admin(&bg).get("/api/v1/broker/mosquitto").unwrap();
    let passwords = files["password_file"].as_str().unwrap();
    assert_eq!(passwords.lines().count(), 1, "{passwords}");
    assert!(!passwords.contains(identity.device_id().as_str()), "{passwords}");
}
