//! `POST /v1/enroll/batch` on a running server: each device gets the answer `POST /v1/enroll`
//! would give it (credentials, or its own error), in order, and a batch outside 1..=1000 is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use halyard_server::background::Background;
use halyard_server::ctl::Client;
use halyard_server::settings::{BrokerSettings, Settings};
use serde_json::{Value, json};

fn request(token: &str, key: &[u8]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({"token": token, "public_key": b64.encode(key), "product": "kiosk", "hardware_class": "pos-x86"})
}

#[test]
fn a_batch_answers_each_device_as_enrolling_alone_would() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = Settings::new(
        tmp.path().join("server"),
        BrokerSettings::Embedded {
            listen: "127.0.0.1:0".parse().unwrap(),
        },
    );
    let bg = Background::start(settings).unwrap();
    let (t1, t2) = (support::enroll_token(&bg), support::enroll_token(&bg));
    let keys: Vec<[u8; 32]> = (1..=3u8)
        .map(|n| SigningKey::from_bytes(&[n; 32]).verifying_key().to_bytes())
        .collect();
    let device = Client::new(&bg.url(), None);
    let answer = device
        .send_json(
            ureq::http::Method::POST,
            "/v1/enroll/batch",
            &json!({"devices": [
                request(&t1, &keys[0]),
                request(&t1, &keys[1]),
                request("not-a-token", &keys[2]),
                request(&t2, b"short"),
                request(&t2, &keys[2]),
            ]}),
        )
        .unwrap();
    let results = answer["results"].as_array().unwrap();
    let statuses: Vec<u64> = results.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 401, 401, 400, 200], "{answer}");
    for (r, key) in [(&results[0], keys[0]), (&results[4], keys[2])] {
        let id = halyard_protocol::DeviceId::from_public_key(&key);
        assert_eq!(r["enrolled"]["device_id"], id.as_str());
        assert!(
            r["enrolled"]["server_key"]
                .as_str()
                .unwrap()
                .contains("PUBLIC KEY")
        );
        assert!(r["enrolled"]["mqtt_password"].is_string(), "{r}");
        assert!(r.get("error").is_none());
    }
    assert!(
        results[1]["error"].as_str().unwrap().contains("token"),
        "{answer}"
    );
    let listed = support::admin(&bg).get("/api/v1/devices").unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    for bad in [
        json!({"devices": []}),
        json!({"devices": vec![request(&t2, &keys[2]); 1001]}),
    ] {
        let refused = device.send_json(ureq::http::Method::POST, "/v1/enroll/batch", &bad);
        assert!(refused.is_err(), "{refused:?}");
    }
}
