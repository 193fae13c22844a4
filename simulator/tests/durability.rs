//! Durability: the server is killed with SIGKILL in the middle of a rollout and restarted on the same
//! data directory. No device or rollout state is lost, no wave is decided twice, and the rollout
//! completes. The server runs in a child process: this test binary re-executed in "server mode"
//! (`server_process`), which runs the same `halyard_server::server::run` as the `halyard-server` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use halyard_server::settings::{BrokerSettings, Settings};
use halyard_sim::control::Control;
use halyard_sim::harness::{Fleetline, Group};
use serde_json::{Value, json};
use support::*;

/// Server mode, run by the durability test in a child process (ignored in normal runs).
#[test]
#[ignore = "the server half of the kill -9 test; the test runs it in a child process"]
fn server_process() {
    let Ok(dir) = std::env::var("HALYARD_DURABILITY_DIR") else {
        return;
    };
    let http: SocketAddr = std::env::var("HALYARD_DURABILITY_HTTP").unwrap().parse().unwrap();
    let mqtt: SocketAddr = std::env::var("HALYARD_DURABILITY_MQTT").unwrap().parse().unwrap();
    let mut settings = Settings::new(&dir, BrokerSettings::Embedded { listen: mqtt });
    settings.tick = Duration::from_millis(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(http).await.unwrap();
        halyard_server::server::run(listener, std::future::pending(), settings, |_| {})
            .await
            .unwrap();
    });
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn spawn_server(dir: &Path, http: SocketAddr, mqtt: SocketAddr) -> Child {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["server_process", "--exact", "--ignored", "--nocapture"])
        .env("HALYARD_DURABILITY_DIR", dir)
        .env("HALYARD_DURABILITY_HTTP", http.to_string())
        .env("HALYARD_DURABILITY_MQTT", mqtt.to_string())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while ureq::get(format!("http://{http}/healthz")).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server process did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn rollout(c: &Control) -> Value {
    c.get("/api/v1/rollouts/r-kill").unwrap()
}

#[test]
fn kill_9_mid_rollout_loses_nothing_and_the_rollout_completes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let (http, mqtt) = (free_port(), free_port());
    let mut server = spawn_server(&data, http, mqtt);
    let token = std::fs::read_to_string(halyard_server::server::admin_token_path(&data)).unwrap();
    let control = Control::new(&format!("http://{http}"), token.trim());
    let mut line = Fleetline::new(control, dir.path(), IMAGE_LEN, "1.0.0").unwrap();
    let _: Value = line
        .control
        .put_json(
            "/api/v1/sites/store-1",
            &json!({"name": "store-1", "tz": "Europe/Berlin", "windows": [], "max_concurrent": null}),
        )
        .unwrap();
    for hw in ["pos-x86", "pos-arm"] {
        line.add(
            &Group {
                site: "store-1".into(),
                hardware_class: hw.into(),
                count: 3,
                behaviors: vec![],
            },
            "1.0.0",
        )
        .unwrap();
    }
    wait_versions(&line, &[("1.0.0", 6)], 60);
    line.upload("2.0.0", 1).unwrap();
    let wave = |p: u8| json!({"size": {"percent": p}, "soak_secs": 3, "failure_budget": {"count": 0}});
    let policy = json!({"waves": [wave(34), wave(33), wave(33)], "on_breach": "revert", "silent_after_secs": 600, "respect_windows": false});
    let _: Value = line
        .control
        .post(
            "/api/v1/rollouts",
            &json!({"id": "r-kill", "version": "2.0.0", "selector": "", "seed": 9, "policy": policy}),
        )
        .unwrap();

    // Kill the server once wave 2 has started.
    let before = line
        .wait("wave 2 to start", Duration::from_secs(120), |c| {
            let r = rollout(c);
            Ok((decisions_of("wave_started", &r).len() >= 2).then_some(r))
        })
        .unwrap();
    assert!(
        decisions_of("completed", &before).is_empty(),
        "rollout finished before the kill"
    );
    server.kill().unwrap();
    server.wait().unwrap();
    let devices_before: Value = {
        let fresh = spawn_server(&data, http, mqtt);
        server = fresh;
        line.control.get("/api/v1/devices").unwrap()
    };

    // Nothing committed before the kill is lost.
    let after = rollout(&line.control);
    let before_decisions = before["decisions"].as_array().unwrap();
    let after_decisions = after["decisions"].as_array().unwrap();
    assert!(after_decisions.len() >= before_decisions.len());
    assert_eq!(
        &after_decisions[..before_decisions.len()],
        before_decisions.as_slice(),
        "decisions changed across the kill"
    );
    let (waves_before, waves_after) = (
        &before["rollout"]["state"]["waves"],
        &after["rollout"]["state"]["waves"],
    );
    for (i, w) in waves_before.as_array().unwrap().iter().enumerate() {
        assert_eq!(
            waves_after[i]["devices"], w["devices"],
            "wave {i} membership changed"
        );
        if !w["started_at"].is_null() {
            assert_eq!(
                waves_after[i]["started_at"], w["started_at"],
                "wave {i} started again"
            );
        }
    }
    assert_eq!(
        devices_before.as_array().unwrap().len(),
        6,
        "devices lost: {devices_before}"
    );
    for (id, d) in before["rollout"]["state"]["devices"].as_object().unwrap() {
        let now = &after["rollout"]["state"]["devices"][id];
        assert_eq!(now["wave_index"], d["wave_index"], "device {id} changed wave");
        if !d["assigned_at"].is_null() {
            assert_eq!(now["assigned_at"], d["assigned_at"], "device {id} assigned twice");
        }
    }

    // The rollout goes on from where it was and completes, each wave started once.
    let done = wait_rollout(&line, "r-kill", "completed", 240);
    wait_versions(&line, &[("2.0.0", 6)], 60);
    assert_eq!(decisions_of("wave_started", &done).len(), 3, "{done:#}");
    assert_eq!(decisions_of("completed", &done).len(), 1, "{done:#}");
    line.shutdown();
    server.kill().unwrap();
    let _ = server.wait();
}
