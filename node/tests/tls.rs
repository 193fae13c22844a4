//! MQTT over TLS (`mqtts://` + `server.ca_file`): the agent's rustls/ring client connects to a real
//! Mosquitto TLS listener whose certificate the configured CA signed, and does not connect when the
//! CA file holds another authority. Certificates come from the `openssl` command line tool and the
//! broker is a private `mosquitto` process on a free loopback port; the test is skipped (with a
//! message) when either tool is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use halyard_node::config::MqttSettings;
use halyard_node::transport::mqtt::{Inbound, Mqtt};

fn tool(name: &str) -> bool {
    Command::new(name)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`{name}-ca.pem`) and, for `signed`, a server certificate for 127.0.0.1 signed by it.
fn authority(dir: &Path, name: &str, signed: bool) {
    let (ca_key, ca) = (format!("{name}-ca.key"), format!("{name}-ca.pem"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
        ],
    );
    if signed {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
    }
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(dir: &Path) -> (Broker, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = format!(
        "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\ncafile {d}/good-ca.pem\n\
         certfile {d}/server.pem\nkeyfile {d}/server.key\n",
        d = dir.display()
    );
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
        .spawn()
        .unwrap();
    let broker = Broker(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "mosquitto did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (broker, port)
}

fn settings(port: u16, ca: &Path) -> MqttSettings {
    MqttSettings {
        host: "127.0.0.1".into(),
        port,
        tls_ca: Some(ca.to_path_buf()),
        credentials: None,
        keep_alive: Duration::from_secs(30),
        tick: Duration::from_millis(50),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
    }
}

fn connects(settings: &MqttSettings, within: Duration) -> bool {
    let mqtt = Mqtt::start(
        settings,
        "tls-test",
        "halyard/v1/devices/tls-test/desired",
        Box::new(|| None),
    );
    let start = Instant::now();
    let mut up = false;
    while start.elapsed() < within && !up {
        up = mqtt.recv(Duration::from_millis(100)) == Some(Inbound::Connected);
    }
    mqtt.shutdown();
    up
}

#[test]
fn mqtts_connects_with_the_right_ca_and_refuses_another() {
    if !tool("openssl") || !tool("mosquitto") {
        eprintln!("SKIPPED: needs the openssl and mosquitto command line tools");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    authority(tmp.path(), "good", true);
    authority(tmp.path(), "other", false);
    let (_broker, port) = start_broker(tmp.path());
    assert!(
        connects(
            &settings(port, &tmp.path().join("good-ca.pem")),
            Duration::from_secs(10)
        ),
        "no TLS connection; broker log:\n{}",
        std::fs::read_to_string(tmp.path().join("mosquitto.log")).unwrap_or_default()
    );
    assert!(
        !connects(
            &settings(port, &tmp.path().join("other-ca.pem")),
            Duration::from_secs(2)
        ),
        "a certificate from another CA must not be accepted"
    );
    let err = halyard_node::transport::mqtt::tls_config(&tmp.path().join("ext.cnf")).unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
}
