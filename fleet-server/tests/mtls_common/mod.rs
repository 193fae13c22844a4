//! Shared by the mutual-TLS tests: a server with its own CA, MQTTS and `MutualTls::Required`, agents
//! enrolled over HTTPS with the node library, and raw TLS handshakes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use halyard_node::client_cert::ClientIdentity;
use halyard_node::config::{HttpSettings, MqttSettings};
use halyard_node::enroll::{self, Enrollment, Facts};
use halyard_node::faults::NoCrash;
use halyard_node::identity::Identity;
use halyard_node::transport::api::ServerApi;
use halyard_server::background::Background;
use halyard_server::mtls::MutualTls;
use halyard_server::settings::{BrokerSettings, Settings};
use halyard_server::tls::TlsSettings;

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A server with its own CA, HTTPS, MQTTS in front of the embedded broker, and `mtls`.
pub fn server(dir: &Path, mtls: MutualTls) -> Background {
    let mut settings = Settings::new(
        dir,
        BrokerSettings::Embedded {
            listen: "127.0.0.1:0".parse().unwrap(),
        },
    );
    settings.tls = Some(TlsSettings::SelfSigned {
        names: vec!["localhost".into(), "127.0.0.1".into()],
    });
    settings.mqtts = Some("127.0.0.1:0".parse().unwrap());
    settings.mtls = mtls;
    Background::start(settings).unwrap()
}

/// The fleet CA file of a server started in `dir`.
pub fn ca_of(dir: &Path) -> PathBuf {
    dir.join("tls/ca.pem")
}

pub fn http(ca: &Path) -> HttpSettings {
    HttpSettings {
        ca_file: Some(ca.to_path_buf()),
        max_artifact_bytes: 1 << 20,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
    }
}

/// A fresh one-time enrollment token from the admin API.
pub fn enroll_token(bg: &Background, ca: &Path) -> String {
    let admin = halyard_server::ctl::Client::with_ca(&bg.url(), Some(bg.admin_token.clone()), ca).unwrap();
    let answer = admin
        .send_json(
            ureq::http::Method::POST,
            "/api/v1/enroll-tokens",
            &serde_json::json!({}),
        )
        .unwrap();
    answer["token"].as_str().unwrap().to_owned()
}

/// Enrolls a device in `dir` over HTTPS trusting `ca` (no client certificate: it has none yet).
pub fn enroll(bg: &Background, ca: &Path, dir: &Path) -> Result<(Identity, Enrollment), String> {
    std::fs::create_dir_all(dir).unwrap();
    let identity = Identity::load_or_create(dir, &NoCrash).unwrap();
    let api = ServerApi::new(&bg.url(), &http(ca)).unwrap();
    let facts = Facts {
        product: "mtls-test".into(),
        hardware_class: "hw".into(),
    };
    let token = enroll_token(bg, ca);
    enroll::enroll(&api, &bg.url(), &identity, &token, &facts, dir, &NoCrash)
        .map(|record| (identity, record))
        .map_err(|e| e.to_string())
}

/// The device API of `bg` as the device in `dir` calls it (with its client certificate, if any).
pub fn device_api(bg: &Background, ca: &Path, client: Option<&ClientIdentity>) -> ServerApi {
    ServerApi::with_client_cert(&bg.url(), &http(ca), client).unwrap()
}

/// `host:port` of an `mqtts://` broker URL.
pub fn mqtts_addr(record: &Enrollment) -> String {
    record
        .answer
        .broker
        .strip_prefix("mqtts://")
        .expect("an mqtts:// broker")
        .to_owned()
}

pub fn mqtts_settings(record: &Enrollment, dir: &Path) -> MqttSettings {
    let (host, port) = mqtts_addr(record)
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.to_owned()))
        .unwrap();
    MqttSettings {
        host,
        port: port.parse().unwrap(),
        tls_ca: record.ca_file(dir),
        credentials: record.credentials(),
        keep_alive: Duration::from_secs(30),
        tick: Duration::from_millis(50),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
    }
}

/// Completes a TLS handshake with `addr` trusting `ca`, presenting `client`; then writes `send` and
/// reads what comes back until the server closes or 2 s pass. `Err` = the TLS error.
pub fn tls_exchange(
    ca: &Path,
    client: Option<&ClientIdentity>,
    addr: &str,
    send: &[u8],
) -> Result<Vec<u8>, String> {
    use std::io::{Read as _, Write as _};
    let config = halyard_node::transport::mqtt::tls_config_with_cert(ca, client).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(send).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    match tls.read_to_end(&mut got) {
        Ok(_) => Ok(got),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !got.is_empty() => Ok(got),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            Ok(got)
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(got),
        Err(e) => Err(e.to_string()),
    }
}

/// A minimal MQTT 3.1.1 CONNECT with `client_id` and, if given, `username` (password "x").
pub fn connect_packet(client_id: &str, username: Option<&str>) -> Vec<u8> {
    let string = |s: &str| {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    };
    let mut body = string("MQTT");
    body.extend([4, 0x02 | if username.is_some() { 0xc0 } else { 0 }, 0, 30]);
    body.extend(string(client_id));
    if let Some(user) = username {
        body.extend(string(user));
        body.extend(string("x"));
    }
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// A client certificate for `device` from a CA of its own (not the fleet's), written into `dir`.
pub fn foreign_identity(dir: &Path, device: &str) -> ClientIdentity {
    use rcgen::{CertificateParams, IsCa, Issuer, KeyPair, SanType};
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let uri = format!("{}{device}", halyard_server::mtls::DEVICE_URI);
    params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let identity = ClientIdentity {
        cert: dir.join("foreign.pem"),
        key: dir.join("foreign-key.pem"),
    };
    std::fs::write(&identity.cert, cert.pem()).unwrap();
    std::fs::write(&identity.key, key.serialize_pem()).unwrap();
    identity
}
