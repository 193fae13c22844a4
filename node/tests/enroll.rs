//! Enrollment with a one-time token against a scripted server API: the request carries the token
//! and the device's public key, the answer (device id, server key, broker) is stored atomically and
//! used from then on (the broker because the config says "auto", the server key to verify a desired
//! state polled over HTTP); a second start does not enroll again; a refused token stops the agent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use halyard_node::enroll::{Enrollment, RECORD_FILE};
use halyard_protocol::{Desired, DesiredAction, Envelope};
use support::agent::{AgentBox, closed_port};
use support::api_server::ApiServer;

const WAIT: Duration = Duration::from_secs(20);

fn config(api: &ApiServer, token: &str) -> String {
    format!(
        "[server]\nbroker = \"auto\"\nurl = \"{}\"\n[enroll]\ntoken = \"{token}\"\n\
         [poll]\ntick_secs = 1\nhttp_fallback_secs = 1\nhttp_poll_secs = 1\n",
        api.url()
    )
}

#[test]
fn enrolls_once_stores_the_answer_and_trusts_the_enrolled_server_key() {
    let api = ApiServer::start();
    let b = AgentBox::new(&config(&api, "tok-123"));
    let identity = b.identity();
    let device = identity.device_id().clone();
    // Not the config's server key (seed 42): only the enrolled key can make this desired count.
    let enrolled = SigningKey::from_bytes(&[7; 32]);
    let enrolled_pem = halyard_ota::keys::PrivateKey::from_seed(&[7; 32])
        .public()
        .to_pem();
    let answer = serde_json::json!({
        "device_id": device.as_str(),
        "server_key": enrolled_pem,
        "broker": format!("mqtt://127.0.0.1:{}", closed_port()),
    });
    api.route("POST /v1/enroll", 200, answer.to_string());
    let desired = Desired {
        rollout: None,
        action: DesiredAction::Stay,
    };
    let env = Envelope::seal(&desired, &device, 1, &enrolled).unwrap();
    api.route(&format!("GET /v1/devices/{device}/desired"), 200, env.encode());

    let mut agent = b.spawn(&b.log_path("first.log"));
    agent.wait_log("desired state accepted", WAIT);
    agent.term();
    assert!(agent.wait(WAIT).success(), "{}", agent.log());

    let sent = api.bodies("POST /v1/enroll");
    assert_eq!(sent.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&sent[0]).unwrap();
    assert_eq!(body["token"], "tok-123");
    assert_eq!(body["product"], support::PRODUCT);
    assert_eq!(body["hardware_class"], "generic-x86_64");
    assert_eq!(body["agent_version"], env!("CARGO_PKG_VERSION"));
    let key = base64::engine::general_purpose::STANDARD
        .decode(body["public_key"].as_str().unwrap())
        .unwrap();
    assert_eq!(key, identity.public_key());
    let stored = std::fs::read(b.data().join(RECORD_FILE)).unwrap();
    let record: Enrollment = serde_json::from_slice(&stored).unwrap();
    assert_eq!(record.answer.device_id, device.as_str());
    assert_eq!(record.answer.server_key, enrolled_pem);
    // The record's format: the answer's fields and `server_url`, all at the top level.
    let flat: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(flat["device_id"], device.as_str());
    assert_eq!(flat["server_key"], enrolled_pem.as_str());
    assert!(flat["server_url"].is_string(), "{flat}");

    let mut again = b.spawn(&b.log_path("second.log"));
    again.wait_log("agent running", WAIT);
    again.term();
    assert!(again.wait(WAIT).success(), "{}", again.log());
    assert_eq!(api.bodies("POST /v1/enroll").len(), 1, "enrolled once");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_halyard-agent"))
        .arg("--config")
        .arg(b.tmp.path().join("agent.toml"))
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("enrolled: {device} at {}", api.url())),
        "{text}"
    );
}

#[test]
fn a_refused_token_stops_the_agent_and_stores_nothing() {
    let api = ApiServer::start();
    api.route("POST /v1/enroll", 401, r#"{"error": "unknown or used token"}"#);
    let b = AgentBox::new(&config(&api, "used"));
    let mut agent = b.spawn(&b.log_path("agent.log"));
    let status = agent.wait(WAIT);
    assert!(!status.success(), "{}", agent.log());
    assert!(agent.log().contains("unknown or used token"), "{}", agent.log());
    assert!(!b.data().join(RECORD_FILE).exists());
}

#[test]
fn a_device_id_other_than_the_keys_is_refused() {
    let api = ApiServer::start();
    let answer = serde_json::json!({
        "device_id": "dev-00000000000000000000000000000000",
        "server_key": halyard_ota::keys::PrivateKey::from_seed(&[7; 32]).public().to_pem(),
        "broker": "mqtt://127.0.0.1:1",
    });
    api.route("POST /v1/enroll", 200, answer.to_string());
    let b = AgentBox::new(&config(&api, "tok"));
    let mut agent = b.spawn(&b.log_path("agent.log"));
    assert!(!agent.wait(WAIT).success(), "{}", agent.log());
    assert!(agent.log().contains("is not dev-"), "{}", agent.log());
    assert!(!b.data().join(RECORD_FILE).exists());
}
