//! The same rollout as `rollout_e2e.rs`, with the server pointed at an external broker: the real
//! Mosquitto on 127.0.0.1:1883 (started by `.ci/run`; skipped, loudly, when nothing listens there).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use halyard_server::settings::{BrokerSettings, Settings};
use halyard_sim::device::Behavior;
use serde_json::Value;
use support::*;

fn mosquitto(dir: &std::path::Path) -> Settings {
    let mut s = Settings::new(
        dir,
        BrokerSettings::External {
            url: "mqtt://127.0.0.1:1883".into(),
        },
    );
    s.tick = Duration::from_millis(200);
    s
}

fn broker_up() -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], 1883).into();
    let up = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok();
    if !up {
        eprintln!("SKIPPED: no MQTT broker on 127.0.0.1:1883 (install mosquitto or run .ci/run)");
    }
    up
}

#[test]
fn rollouts_complete_and_revert_over_mosquitto() {
    if !broker_up() {
        return;
    }
    let w = world(1, &[("3.1.0", "pos-x86", Behavior::Unhealthy)], mosquitto);
    w.line.upload("3.0.0", 1).unwrap();
    let _: Value = w
        .line
        .control
        .post("/api/v1/rollouts", &three_waves("3.0.0", "r-mq-good"))
        .unwrap();
    wait_rollout(&w.line, "r-mq-good", "completed", 240);
    wait_versions(&w.line, &[("3.0.0", 4)], 30);
    w.line.upload("3.1.0", 1).unwrap();
    let _: Value = w
        .line
        .control
        .post("/api/v1/rollouts", &three_waves("3.1.0", "r-mq-bad"))
        .unwrap();
    wait_rollout(&w.line, "r-mq-bad", "reverted", 240);
    wait_versions(&w.line, &[("3.0.0", 4)], 60);
}
