//! Two server replicas on one PostgreSQL database and one Mosquitto: the engine leader is killed with
//! SIGKILL in the middle of a rollout, the other replica takes the engine lease over, and the rollout
//! completes once: each wave started exactly once, decisions made before the kill unchanged, every
//! device's transitions recorded. Each replica is this test binary re-executed in "replica mode"
//! (`replica_process`), running the same `halyard_server::server::run` as the `halyard-server` binary.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (fails with a clear message unless `HALYARD_SKIP_POSTGRES=1`)
//! and Mosquitto on 127.0.0.1:1883 (skipped loudly without it, like `mosquitto_e2e.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use halyard_server::settings::{BrokerSettings, Database, Settings};
use halyard_server::store::Store;
use halyard_server::store::postgres::PgStore;
use halyard_server::store::postgres::temp::TempDatabase;
use halyard_sim::control::Control;
use halyard_sim::harness::{Fleetline, Group};
use serde_json::{Value, json};
use support::*;

const BROKER: &str = "mqtt://127.0.0.1:1883";
const ROLLOUT: &str = "r-replicas";

/// Replica mode, run by the test in child processes (ignored in normal runs).
#[test]
#[ignore = "one replica of the fail-over test; the test runs it in a child process"]
fn replica_process() {
    let Ok(dir) = std::env::var("HALYARD_REPLICA_DIR") else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap();
    let http: SocketAddr = var("HALYARD_REPLICA_HTTP").parse().unwrap();
    let mut settings = Settings::new(&dir, BrokerSettings::External { url: BROKER.into() });
    settings.database = Database::Postgres {
        url: var("HALYARD_REPLICA_DB"),
    };
    // Both replicas hand devices the same base URL, as replicas behind one load balancer do.
    settings.public_url = Some(var("HALYARD_REPLICA_PUBLIC"));
    settings.tick = Duration::from_millis(200);
    settings.lease_ttl = Duration::from_secs(2);
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

fn spawn_replica(dir: &Path, http: SocketAddr, db: &str, public: SocketAddr) -> Child {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["replica_process", "--exact", "--ignored", "--nocapture"])
        .env("HALYARD_REPLICA_DIR", dir)
        .env("HALYARD_REPLICA_HTTP", http.to_string())
        .env("HALYARD_REPLICA_DB", db)
        .env("HALYARD_REPLICA_PUBLIC", format!("http://{public}"))
        .spawn()
        .unwrap();
    let start = Instant::now();
    while ureq::get(format!("http://{http}/healthz")).call().is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "replica did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Waits until the process `pid` holds the engine lease; returns its epoch.
fn wait_leader(store: &PgStore, pid: u32, secs: u64) -> u64 {
    let start = Instant::now();
    loop {
        let lease = store.engine_lease_row().unwrap();
        if let Some(l) = &lease
            && l.holder.starts_with(&format!("{pid}-"))
        {
            return l.epoch;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "process {pid} did not take the engine lease; lease now {lease:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn temp_db() -> Option<TempDatabase> {
    let admin = std::env::var("HALYARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match TempDatabase::create(&admin) {
        Ok(db) => Some(db),
        Err(e) if std::env::var("HALYARD_SKIP_POSTGRES").is_ok_and(|v| v == "1") => {
            eprintln!("SKIPPED: PostgreSQL unreachable ({e}) and HALYARD_SKIP_POSTGRES=1");
            None
        }
        Err(e) => panic!(
            "PostgreSQL at {admin} is unreachable: {e}\nstart it (.ci/run does), or set \
             HALYARD_SKIP_POSTGRES=1 to skip"
        ),
    }
}

fn broker_up() -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], 1883).into();
    let up = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok();
    if !up {
        eprintln!("SKIPPED: no MQTT broker on 127.0.0.1:1883 (install mosquitto or run .ci/run)");
    }
    up
}

fn start_rollout(line: &Fleetline) {
    line.upload("2.0.0", 1).unwrap();
    let wave = |p: u8| json!({"size": {"percent": p}, "soak_secs": 3, "failure_budget": {"count": 0}});
    let policy = json!({"waves": [wave(34), wave(33), wave(33)], "on_breach": "revert",
        "silent_after_secs": 600, "respect_windows": false});
    let _: Value = line
        .control
        .post(
            "/api/v1/rollouts",
            &json!({"id": ROLLOUT, "version": "2.0.0", "selector": "", "seed": 5, "policy": policy}),
        )
        .unwrap();
}

fn add_devices(line: &mut Fleetline) {
    let _: Value = line
        .control
        .put_json(
            "/api/v1/sites/store-1",
            &json!({"name": "store-1", "tz": "Europe/Berlin", "windows": [], "max_concurrent": null}),
        )
        .unwrap();
    for hw in ["pos-x86", "pos-arm"] {
        let group = Group {
            site: "store-1".into(),
            hardware_class: hw.into(),
            count: 3,
            behaviors: vec![],
        };
        line.add(&group, "1.0.0").unwrap();
    }
    wait_versions(line, &[("1.0.0", 6)], 60);
}

#[test]
fn leader_killed_mid_rollout_the_other_replica_completes_it_once() {
    if !broker_up() {
        return;
    }
    let Some(db) = temp_db() else { return };
    let observer = PgStore::open(db.url(), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let (http_a, http_b) = (free_port(), free_port());
    let mut a = spawn_replica(&data, http_a, db.url(), http_b);
    let epoch_a = wait_leader(&observer, a.id(), 30);
    let mut b = spawn_replica(&data, http_b, db.url(), http_b);
    let token = std::fs::read_to_string(halyard_server::server::admin_token_path(&data)).unwrap();
    // Operators and devices talk to replica B; A leads the engine.
    let control = Control::new(&format!("http://{http_b}"), token.trim());
    let mut line = Fleetline::new(control, dir.path(), IMAGE_LEN, "1.0.0").unwrap();
    add_devices(&mut line);
    start_rollout(&line);

    let before = line
        .wait("wave 2 to start", Duration::from_secs(120), |c| {
            let r: Value = c.get(&format!("/api/v1/rollouts/{ROLLOUT}"))?;
            Ok((decisions_of("wave_started", &r).len() >= 2).then_some(r))
        })
        .unwrap();
    assert!(
        decisions_of("completed", &before).is_empty(),
        "finished before the kill"
    );
    a.kill().unwrap();
    a.wait().unwrap();
    let epoch_b = wait_leader(&observer, b.id(), 30);
    assert!(epoch_b > epoch_a, "takeover must bump the fencing epoch");

    let done = wait_rollout(&line, ROLLOUT, "completed", 240);
    wait_versions(&line, &[("2.0.0", 6)], 60);
    let before_d = before["decisions"].as_array().unwrap();
    assert_eq!(
        &done["decisions"].as_array().unwrap()[..before_d.len()],
        before_d.as_slice(),
        "decisions made before the kill changed"
    );
    let started = decisions_of("wave_started", &done);
    assert_eq!(started.len(), 3, "each wave started exactly once: {done:#}");
    assert_eq!(decisions_of("completed", &done).len(), 1, "{done:#}");
    assert_eq!(
        observer.decisions(ROLLOUT).unwrap().len(),
        done["decisions"].as_array().unwrap().len()
    );
    every_device_recorded(&observer);
    line.shutdown();
    b.kill().unwrap();
    let _ = b.wait();
}

/// No device report was lost across the fail-over: every device's stored report runs 2.0.0, and its
/// commit of 2.0.0 (an event sent around or after the kill) is in the event log.
fn every_device_recorded(store: &PgStore) {
    let devices = store.devices().unwrap();
    assert_eq!(devices.len(), 6);
    for d in devices {
        let report = d.report.as_ref().expect("a stored report");
        let active = match report.active {
            halyard_protocol::Slot::A => &report.slot_a,
            halyard_protocol::Slot::B => &report.slot_b,
        };
        assert_eq!(active.version.as_deref(), Some("2.0.0"), "{}", d.id);
        let events = store.device_events(&d.id, 1000).unwrap();
        let committed = events
            .iter()
            .any(|e| e.rollout.as_deref() == Some(ROLLOUT) && e.to.contains("ommit"));
        assert!(committed, "device {} has no commit event: {events:#?}", d.id);
    }
}
