//! Live updates: the server pushes a Server-Sent Event when a device enrolls, without polling; the
//! stream needs a token like every operator call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use halyard_sim::harness::{ServerHandle, embedded_settings};

#[test]
fn enrollment_is_pushed_to_event_stream_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(embedded_settings(dir.path())).unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/api/v1/events", server.url());
    assert_eq!(agent.get(&url).call().unwrap().status().as_u16(), 401);

    let resp = agent
        .get(&url)
        .header("Authorization", format!("Bearer {}", server.admin_token))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(resp.into_body().into_reader()).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });

    let control = server.control();
    let key = SigningKey::from_bytes(&[5; 32]);
    let token = control.enroll_token(None, &[]).unwrap();
    let pk = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        key.verifying_key().to_bytes(),
    );
    let (id, _, _) = control.enroll_device(&token, &pk, "pos-x86").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("no event for the enrollment");
        if let Some(data) = line.strip_prefix("data: ") {
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            if v["kind"] == "device" && v["id"] == id.as_str() {
                break;
            }
        }
    }
    let unknown = agent
        .get(format!("{}/api/v1/rollouts/nope/events", server.url()))
        .header("Authorization", format!("Bearer {}", server.admin_token))
        .call()
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
}
