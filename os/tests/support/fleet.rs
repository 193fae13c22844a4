//! The host side of the boot test: an in-process `halyard-server` and a small API client (the calls
//! of `simulator/src/control.rs`), plus the guest runs.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use halyard_os::qemu::{Forward, RunOptions, Vm};
use halyard_server::background::Background;
use halyard_server::settings::{BrokerSettings, Settings};
use serde_json::{Value, json};

/// Ports the guest uses on 10.0.2.100.
pub const GUEST_HTTP: u16 = 8080;
pub const GUEST_MQTT: u16 = 1883;

pub struct Fleet {
    pub server: Background,
    agent: ureq::Agent,
}

impl Fleet {
    pub fn start(dir: &Path) -> Self {
        let mut s = Settings::new(
            dir,
            BrokerSettings::Embedded {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
        );
        s.tick = Duration::from_millis(200);
        s.public_url = Some(format!("http://10.0.2.100:{GUEST_HTTP}"));
        s.device_broker_url = Some(format!("mqtt://10.0.2.100:{GUEST_MQTT}"));
        let server = Background::start(s).unwrap();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Self { server, agent }
    }

    pub fn forwards(&self) -> Vec<Forward> {
        let (_, mqtt) = halyard_server::mqtt::parse_url(&self.server.started.broker).unwrap();
        vec![
            Forward {
                guest_port: GUEST_HTTP,
                host_port: self.server.started.http.port(),
            },
            Forward {
                guest_port: GUEST_MQTT,
                host_port: mqtt,
            },
        ]
    }

    fn finish(&self, what: &str, resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Value {
        let mut resp = resp.unwrap();
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap();
        assert!(status.is_success(), "{what}: {status}: {text}");
        serde_json::from_str(if text.is_empty() { "null" } else { &text }).unwrap()
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.server.admin_token)
    }

    pub fn get(&self, path: &str) -> Value {
        let resp = self
            .agent
            .get(format!("{}{path}", self.server.url()))
            .header("Authorization", self.auth())
            .call();
        self.finish(path, resp)
    }

    pub fn send(&self, method: &str, path: &str, body: &[u8], content_type: &str) -> Value {
        let url = format!("{}{path}", self.server.url());
        let resp = match method {
            "PUT" => self.agent.put(url),
            _ => self.agent.post(url),
        }
        .header("Authorization", self.auth())
        .header("Content-Type", content_type)
        .send(body);
        self.finish(path, resp)
    }

    pub fn upload(&self, bundle: &Path) {
        self.send(
            "POST",
            "/api/v1/releases",
            &std::fs::read(bundle).unwrap(),
            "application/octet-stream",
        );
    }

    pub fn rollout(&self, id: &str, version: &str) {
        let wave = json!({"size": {"percent": 100}, "soak_secs": 0, "failure_budget": {"percent": 100}});
        let policy = json!({"waves": [wave], "on_breach": "pause", "silent_after_secs": 600, "respect_windows": false});
        let body = json!({"id": id, "version": version, "selector": "", "seed": 1, "policy": policy});
        self.send(
            "POST",
            "/api/v1/rollouts",
            body.to_string().as_bytes(),
            "application/json",
        );
    }

    /// Polls until rollout `id` has status `status` (`completed`, `paused`, ...); panics after
    /// `timeout` naming `what`.
    pub fn wait_rollout(&self, what: &str, id: &str, status: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let r = self.get(&format!("/api/v1/rollouts/{id}"));
            if r["rollout"]["status"] == status {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: rollout {id} not {status} within {timeout:?}: {r:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The only device's JSON, if enrolled.
    pub fn device(&self) -> Option<Value> {
        let list = self.get("/api/v1/devices");
        let first = list
            .as_array()
            .or_else(|| list["devices"].as_array())
            .and_then(|a| a.first().cloned())?;
        let id = first["id"].as_str()?.to_owned();
        Some(self.get(&format!("/api/v1/devices/{id}")))
    }

    /// Polls until `check` accepts the device's report; panics after `timeout` with `what`.
    pub fn wait(&self, what: &str, timeout: Duration, vm: &Vm, check: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(d) = self.device() {
                // GET /api/v1/devices/{id} answers {device: {.., report}, desired, events}.
                if check(&d["device"]["report"]) {
                    return d;
                }
                if start.elapsed() > timeout {
                    panic!("{what}: timed out; device {d:#}\nconsole:\n{}", tail(vm));
                }
            } else if start.elapsed() > timeout {
                panic!("{what}: no device enrolled\nconsole:\n{}", tail(vm));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn tail(vm: &Vm) -> String {
    let lines = vm.console();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// `state` of a report as lower-case JSON text without underscores (`{"state":"rolledback",...}`).
pub fn state(report: &Value) -> String {
    report["state"].to_string().to_lowercase().replace('_', "")
}

pub fn slot_version(report: &Value, slot: &str) -> String {
    report[format!("slot_{slot}")]["version"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

pub fn active(report: &Value) -> String {
    report["active"].as_str().unwrap_or("").to_lowercase()
}

/// One boot of `disk` with `build`'s kernel and initramfs; console appended to `log`; disk writes
/// capped at `write_bps` bytes per second when given.
pub fn boot(build: &Path, disk: &Path, fleet: &Fleet, log: &Path, write_bps: Option<u64>) -> Vm {
    let mut opts = RunOptions::beside(
        &build.join("disk.img"),
        PathBuf::from(env!("CARGO_BIN_EXE_halyard-os")),
    )
    .unwrap();
    opts.disk = disk.to_path_buf();
    opts.forwards = fleet.forwards();
    opts.write_bytes_per_sec = write_bps;
    std::fs::write(log.with_extension("cmd"), format!("{:?}", opts.command())).unwrap();
    Vm::start(&opts, Some(log)).unwrap()
}
