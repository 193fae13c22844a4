//! Security of the server's surfaces: operator calls without a token or with too low a role are
//! refused (and mutating calls are audited), and device messages signed by another device, sent for
//! another device, or replayed are refused over HTTPS and MQTT alike.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ed25519_dalek::SigningKey;
use halyard_protocol::{AgentState, DeviceId, Envelope, Report, Slot, SlotReport, Topic};
use halyard_sim::control::Control;
use halyard_sim::harness::{ServerHandle, embedded_settings};
use serde_json::{Value, json};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn status(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> u16 {
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match (method, body) {
        ("GET", _) => {
            let mut r = a.get(url);
            if let Some(h) = &auth {
                r = r.header("Authorization", h)
            }
            r.call()
        }
        (m, body) => {
            let mut r = if m == "PUT" { a.put(url) } else { a.post(url) };
            if let Some(h) = &auth {
                r = r.header("Authorization", h)
            }
            r.header("Content-Type", "application/json")
                .send(body.unwrap_or("{}").as_bytes())
        }
    };
    resp.unwrap().status().as_u16()
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
        agent_version: "t".into(),
        product: "halyard-sim".into(),
        hardware_class: "pos-x86".into(),
        active: Slot::A,
        slot_a: slot.clone(),
        slot_b: slot,
        state: AgentState::Idle,
        last_error: None,
        health: None,
    }
}

fn enroll(c: &Control, key: &SigningKey) -> DeviceId {
    let token = c.enroll_token(None, &[]).unwrap();
    let pk = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        key.verifying_key().to_bytes(),
    );
    let (id, _, _) = c.enroll_device(&token, &pk, "pos-x86").unwrap();
    DeviceId::new(id).unwrap()
}

#[test]
fn operator_api_requires_tokens_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(embedded_settings(dir.path())).unwrap();
    let base = server.url();
    let admin = server.control();
    assert_eq!(status("GET", &format!("{base}/api/v1/devices"), None, None), 401);
    assert_eq!(
        status(
            "GET",
            &format!("{base}/api/v1/devices"),
            Some("hly_not-a-token"),
            None
        ),
        401
    );
    let mk = |role: &str| -> String {
        let v: Value = admin
            .post("/api/v1/tokens", &json!({"name": role, "role": role}))
            .unwrap();
        v["token"].as_str().unwrap().to_owned()
    };
    let (viewer, operator) = (mk("viewer"), mk("operator"));
    let site = r#"{"name":"s1","tz":"Europe/Berlin","windows":[],"max_concurrent":null}"#;
    let rollout = r#"{"version":"1.0.0","selector":"","policy":{"waves":[{"size":{"percent":100},"soak_secs":1,"failure_budget":{"count":0}}],"on_breach":"revert","silent_after_secs":60,"respect_windows":false}}"#;
    assert_eq!(
        status("GET", &format!("{base}/api/v1/devices"), Some(&viewer), None),
        200
    );
    assert_eq!(
        status(
            "PUT",
            &format!("{base}/api/v1/sites/s1"),
            Some(&viewer),
            Some(site)
        ),
        403
    );
    assert_eq!(
        status(
            "POST",
            &format!("{base}/api/v1/rollouts"),
            Some(&viewer),
            Some(rollout)
        ),
        403
    );
    assert_eq!(
        status(
            "POST",
            &format!("{base}/api/v1/rollouts/r1/pause"),
            Some(&viewer),
            None
        ),
        403
    );
    assert_eq!(
        status(
            "POST",
            &format!("{base}/api/v1/tokens"),
            Some(&operator),
            Some(r#"{"name":"x","role":"admin"}"#)
        ),
        403
    );
    assert_eq!(
        status("GET", &format!("{base}/api/v1/audit"), Some(&operator), None),
        403
    );
    assert_eq!(
        status(
            "PUT",
            &format!("{base}/api/v1/sites/s1"),
            Some(&operator),
            Some(site)
        ),
        200
    );
    let audit: Value = admin.get("/api/v1/audit").unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["token.create", "token.create", "site.put"],
        "{audit:#}"
    );
}

#[test]
fn device_messages_must_be_signed_by_that_device_and_fresh() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(embedded_settings(dir.path())).unwrap();
    let c = server.control();
    let (key_a, key_b) = (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]));
    let (a, b) = (enroll(&c, &key_a), enroll(&c, &key_b));
    let post = |id: &DeviceId, env: &Envelope| {
        let url = format!("{}/v1/devices/{id}/report", server.url());
        let body = String::from_utf8(env.encode()).unwrap();
        status("POST", &url, None, Some(&body))
    };
    let forged = Envelope::seal(&report(1), &a, 1, &key_b).unwrap();
    assert_eq!(post(&a, &forged), 401, "report for A signed by B accepted");
    let b_own = Envelope::seal(&report(1), &b, 1, &key_b).unwrap();
    assert_eq!(post(&a, &b_own), 400, "B's report accepted on A's path");
    let good = Envelope::seal(&report(2), &a, 5, &key_a).unwrap();
    assert_eq!(post(&a, &good), 202);
    assert_eq!(post(&a, &good), 409, "replayed report accepted");
    let stale = Envelope::seal(&report(3), &a, 4, &key_a).unwrap();
    assert_eq!(post(&a, &stale), 409, "stale sequence number accepted");
    let unknown = SigningKey::from_bytes(&[3; 32]);
    let stranger = DeviceId::from_public_key(&unknown.verifying_key().to_bytes());
    assert_eq!(
        post(
            &stranger,
            &Envelope::seal(&report(1), &stranger, 1, &unknown).unwrap()
        ),
        401
    );

    let rejected_before = rejected(&server.url());
    // Over MQTT: B publishes a report on A's topic signed with its own key, and one claiming to be A.
    let (host, port) = halyard_server::mqtt::parse_url(&server.broker).unwrap();
    let (client, mut conn) = rumqttc::Client::new(rumqttc::MqttOptions::new("intruder", host, port), 10);
    let topic = Topic::Report.for_device(&a);
    let forged = Envelope::seal(&report(99), &a, 100, &key_b).unwrap();
    // Retained, so it reaches the server even if its subscription is still being set up.
    client
        .publish(&topic, rumqttc::QoS::AtLeastOnce, true, forged.encode())
        .unwrap();
    let mut acks = 0;
    for ev in conn.iter().take(20) {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = ev {
            acks += 1;
            break;
        }
    }
    assert_eq!(acks, 1, "broker never acknowledged the forged publish");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rejected(&server.url()) == rejected_before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let dev: Value = c.get(&format!("/api/v1/devices/{a}")).unwrap();
    assert_eq!(
        dev["device"]["report"]["at"], 2,
        "forged MQTT report was ingested: {dev}"
    );
    assert_eq!(
        rejected(&server.url()),
        rejected_before + 1,
        "the forged MQTT report was not counted as rejected"
    );
}

fn rejected(base: &str) -> u64 {
    let metrics = agent()
        .get(format!("{base}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("halyard_messages_rejected_total "))
        .unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}
