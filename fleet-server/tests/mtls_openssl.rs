//! Interoperability of mutual TLS with OpenSSL (the `openssl` and `curl` command line tools, which
//! Mosquitto and most operators' tooling share): OpenSSL verifies the device certificate the fleet
//! CA issued and reads the key the agent made; `openssl s_client` completes a mutual handshake with
//! the MQTTS front and is refused without a certificate; curl with the device's files gets its own
//! `desired` (204), 401 without them and 403 on another device's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mtls_common;

use std::path::Path;
use std::process::{Command, Stdio};

use halyard_server::mtls::MutualTls;
use mtls_common::*;

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn curl_status(url: &str, ca: &Path, client: Option<(&Path, &Path)>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca);
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let (_, text) = run(cmd.arg(url));
    text
}

#[test]
fn openssl_verifies_the_device_certificate_and_handshakes_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let bg = server(&server_dir, MutualTls::Required);
    let ca = ca_of(&server_dir);
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (_, record) = enroll(&bg, &ca, &dir_a).unwrap();
    let (_, other) = enroll(&bg, &ca, &dir_b).unwrap();
    let client = record.client_identity(&dir_a).unwrap();

    let (ok, text) = run(Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&ca)
        .arg(&client.cert));
    assert!(ok && text.contains(": OK"), "{text}");
    let (ok, text) = run(Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName,extendedKeyUsage",
            "-in",
        ])
        .arg(&client.cert));
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("CN = {}", record.answer.device_id)),
        "{text}"
    );
    assert!(
        text.contains(&format!("URI:urn:halyard:device:{}", record.answer.device_id)),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    let (ok, text) = run(Command::new("openssl")
        .args(["pkey", "-noout", "-text", "-in"])
        .arg(&client.key));
    assert!(
        ok && text.contains("prime256v1"),
        "the agent's key reads as P-256 PKCS#8: {text}"
    );
    // A certificate from another CA does not verify against the fleet CA.
    let foreign = foreign_identity(&tmp.path().join("foreign"), &record.answer.device_id);
    let (ok, text) = run(Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&ca)
        .arg(&foreign.cert));
    assert!(!ok, "{text}");

    // s_client against the MQTTS front: mutual handshake with the device's files; refused without.
    let addr = mqtts_addr(&record);
    let s_client = |with_cert: bool| {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-brief",
            "-tls1_2",
            "-verify_return_error",
            "-connect",
            &addr,
            "-CAfile",
        ])
        .arg(&ca);
        if with_cert {
            cmd.arg("-cert").arg(&client.cert).arg("-key").arg(&client.key);
        }
        run(&mut cmd)
    };
    let (ok, text) = s_client(true);
    eprintln!("s_client with the device certificate:\n{text}");
    assert!(ok && text.contains("CONNECTION ESTABLISHED"), "{text}");
    let (ok, text) = s_client(false);
    eprintln!("s_client without a certificate:\n{text}");
    assert!(!ok && !text.contains("CONNECTION ESTABLISHED"), "{text}");

    // curl (OpenSSL) on the device API.
    let desired = |id: &str| format!("{}/v1/devices/{id}/desired", bg.url());
    let files = Some((client.cert.as_path(), client.key.as_path()));
    assert_eq!(curl_status(&desired(&record.answer.device_id), &ca, files), "204");
    assert_eq!(curl_status(&desired(&record.answer.device_id), &ca, None), "401");
    assert_eq!(curl_status(&desired(&other.answer.device_id), &ca, files), "403");
}
