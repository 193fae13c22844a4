//! The `halyard-agent` binary end to end on a layered config with the file boot backend and
//! file-backed slots. `install FILE` verifies a local bundle against the trust root, writes the
//! inactive slot and arms the bootloader; `status` then shows the journaled state; a tampered bundle
//! stages nothing. `run` against the real Mosquitto publishes a signed online presence and report,
//! and when the process is killed the broker fires its pre-signed offline will, newer than the online.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use halyard_hardware::boot::SimulatedBoot;
use halyard_hardware::boot::file::FileEnv;
use halyard_protocol::Sha256;
use support::*;

struct Box_ {
    tmp: tempfile::TempDir,
    v1: Vec<u8>,
}

impl Box_ {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        let v1 = image_bytes(200 * 1024, 21);
        let mut a = vec![0u8; SLOT_SIZE];
        a[..v1.len()].copy_from_slice(&v1);
        std::fs::write(p.join("slot-a"), a).unwrap();
        std::fs::write(p.join("slot-b"), vec![0u8; SLOT_SIZE]).unwrap();
        std::fs::write(p.join("root.json"), root_json()).unwrap();
        let server = halyard_ota::keys::PrivateKey::from_seed(&[42; 32])
            .public()
            .to_pem();
        std::fs::write(p.join("server.pem"), server).unwrap();
        let mut boot = FileEnv::boot_control(p.join("bootenv"));
        boot.provision().unwrap();
        boot.simulate_boot().unwrap();
        let config = format!(
            "data_dir = {data:?}\nproduct = \"{PRODUCT}\"\ntrust_root = {root:?}\nserver_key = {key:?}\n\
             [poll]\ntick_secs = 1\n\
             [boot]\nbackend = \"file\"\nenv = {env:?}\ncurrent = \"env\"\nreboot = \"/bin/true\"\n\
             [slots]\na = {a:?}\nb = {b:?}\n\
             [factory]\nversion = \"1.0.0\"\nsize = {size}\nsha256 = \"{sha}\"\n",
            data = p.join("data").display().to_string(),
            root = p.join("root.json").display().to_string(),
            key = p.join("server.pem").display().to_string(),
            env = p.join("bootenv").display().to_string(),
            a = p.join("slot-a").display().to_string(),
            b = p.join("slot-b").display().to_string(),
            size = v1.len(),
            sha = Sha256::of(&v1).to_hex(),
        );
        std::fs::write(p.join("agent.toml"), config).unwrap();
        std::fs::create_dir_all(p.join("data")).unwrap();
        Self { tmp, v1 }
    }

    fn agent(&self, args: &[&str]) -> Output {
        let config = self.tmp.path().join("agent.toml");
        Command::new(env!("CARGO_BIN_EXE_halyard-agent"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    }

    fn slot_b_hash(&self, len: usize) -> Sha256 {
        let b = std::fs::read(self.tmp.path().join("slot-b")).unwrap();
        Sha256::of(&b[..len])
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write_bundle(dir: &Path, bytes: &[u8]) -> String {
    let path = dir.join("update.hyd");
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn install_from_a_local_file_stages_the_other_slot() {
    let b = Box_::new();
    let mut v2 = b.v1.clone();
    v2[100..5000].fill(0x33);
    let usb = tempfile::tempdir().unwrap();
    let file = write_bundle(usb.path(), &full_bundle("2.0.0", 1, &v2));
    let out = b.agent(&["install", &file]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(b.slot_b_hash(v2.len()), Sha256::of(&v2));
    let boot = FileEnv::boot_control(b.tmp.path().join("bootenv"))
        .boot_env()
        .unwrap();
    assert!(boot.state(halyard_hardware::Slot::B).bootable, "{boot:?}");
    let out = b.agent(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = text(&out);
    assert!(status.contains("Rebooting"), "{status}");
    assert!(status.contains("slot B: 2.0.0"), "{status}");
}

#[test]
fn install_refuses_a_bundle_the_root_does_not_trust() {
    let b = Box_::new();
    let mut bundle = full_bundle("2.0.0", 1, &b.v1);
    let last = bundle.len() - 1;
    bundle[last] ^= 1; // payload no longer matches its signed digest
    let usb = tempfile::tempdir().unwrap();
    let file = write_bundle(usb.path(), &bundle);
    let out = b.agent(&["install", &file]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not installed"), "{}", text(&out));
    let status = text(&b.agent(&["status"]));
    assert!(status.contains("Failed"), "{status}");
    let boot = FileEnv::boot_control(b.tmp.path().join("bootenv"))
        .boot_env()
        .unwrap();
    assert!(!boot.state(halyard_hardware::Slot::B).bootable, "{boot:?}");
}

#[test]
fn run_publishes_presence_and_report_and_the_broker_fires_the_will_on_a_crash() {
    use rumqttc::{Client, Event as MqttEvent, MqttOptions, Packet, QoS};
    let addr: std::net::SocketAddr = "127.0.0.1:1883".parse().unwrap();
    if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_err() {
        eprintln!("SKIPPED: no MQTT broker listens on 127.0.0.1:1883 (install mosquitto or run .ci/run)");
        return;
    }
    let b = Box_::new();
    let data = b.tmp.path().join("data");
    let identity =
        halyard_node::identity::Identity::load_or_create(&data, &halyard_node::faults::NoCrash).unwrap();
    let device = identity.device_id().clone();
    let device_key = ed25519_dalek::VerifyingKey::from_bytes(&identity.public_key()).unwrap();
    let (client, mut connection) =
        Client::new(MqttOptions::new(format!("watch-{device}"), "127.0.0.1", 1883), 16);
    client
        .subscribe(format!("halyard/v1/devices/{device}/#"), QoS::AtLeastOnce)
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(MqttEvent::Incoming(Packet::SubAck(_))) => tx.send(None).unwrap_or(()),
                Ok(MqttEvent::Incoming(Packet::Publish(p))) if !p.payload.is_empty() => {
                    let env = halyard_protocol::Envelope::decode(&p.payload).unwrap();
                    if tx.send(Some(env)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    assert_eq!(
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(),
        None,
        "subscribed"
    );
    let config = b.tmp.path().join("agent.toml");
    let log = b.tmp.path().join("agent.log");
    let mut agent = Killed(
        Command::new(env!("CARGO_BIN_EXE_halyard-agent"))
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let next = |what: halyard_protocol::Kind| loop {
        let env = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| {
                panic!(
                    "no message; agent log:\n{}",
                    std::fs::read_to_string(&log).unwrap()
                )
            })
            .unwrap();
        env.verify(&device_key).unwrap();
        if env.kind == what {
            return env;
        }
    };
    let online = next(halyard_protocol::Kind::Presence);
    let p: halyard_protocol::Presence = online.open(&device_key).unwrap();
    assert!(p.online);
    let report: halyard_protocol::Report = next(halyard_protocol::Kind::Report).open(&device_key).unwrap();
    assert_eq!(report.state, halyard_protocol::AgentState::Idle);
    assert_eq!(report.slot_a.version.as_deref(), Some("1.0.0"));
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let will = next(halyard_protocol::Kind::Presence);
    let p: halyard_protocol::Presence = will.open(&device_key).unwrap();
    assert!(!p.online, "the will says offline");
    assert!(
        will.seq > online.seq,
        "will seq {} must be above online {}",
        will.seq,
        online.seq
    );
    for topic in ["presence", "report"] {
        client
            .publish(
                format!("halyard/v1/devices/{device}/{topic}"),
                QoS::AtLeastOnce,
                true,
                Vec::<u8>::new(),
            )
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
}

/// Kills the agent process when the test ends, pass or fail.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGTERM stops `run` cleanly: exit status 0, the journal loads and holds the state it had, no temp
/// file is left behind. The broker is a closed loopback port, so the agent is mid-reconnect.
#[test]
fn sigterm_stops_run_cleanly_with_a_consistent_journal() {
    let b = Box_::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dropins = b.tmp.path().join("agent.d");
    std::fs::create_dir_all(&dropins).unwrap();
    std::fs::write(
        dropins.join("broker.toml"),
        format!("[server]\nbroker = \"mqtt://127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let log = b.tmp.path().join("agent.log");
    let mut agent = Killed(
        Command::new(env!("CARGO_BIN_EXE_halyard-agent"))
            .arg("--config")
            .arg(b.tmp.path().join("agent.toml"))
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let running = || std::fs::read_to_string(&log).unwrap().contains("agent running");
    let started = std::time::Instant::now();
    while !running() {
        assert!(
            started.elapsed().as_secs() < 20,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_for(&mut agent.0, std::time::Duration::from_secs(10));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status:?}\n{text}");
    assert!(text.contains("agent stopped"), "{text}");
    let data = b.tmp.path().join("data");
    let journal =
        halyard_node::journal::Journal::new(&data, std::sync::Arc::new(halyard_node::faults::NoCrash));
    let record = journal.load().unwrap().expect("a journal");
    assert_eq!(record.state, halyard_node::fsm::State::Idle);
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn wait_for(child: &mut std::process::Child, limit: std::time::Duration) -> std::process::ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "the agent did not exit within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
