//! Mutual TLS end to end (`MutualTls::Required`, fleet CA made by the server): the agent's own code
//! enrolls over HTTPS without a client certificate, makes its TLS key on the device and gets a
//! certificate for it, then reports over MQTTS and over the HTTPS fallback presenting it. Without a
//! certificate, or with one from another CA, MQTTS and the device endpoints refuse; device A's
//! certificate cannot be used for device B (HTTPS 403, MQTTS CONNACK "not authorized").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mtls_common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Instant;

use halyard_node::driver::Outgoing;
use halyard_node::identity::Identity;
use halyard_node::transport::codec;
use halyard_node::transport::mqtt::{Inbound, Mqtt};
use halyard_protocol::{AgentState, Report, Slot, SlotReport};
use halyard_server::mtls::MutualTls;
use mtls_common::*;

fn report() -> Report {
    let slot = |v: &str| SlotReport {
        version: Some(v.into()),
        image_sha256: None,
        bootable: true,
        successful: true,
    };
    Report {
        at: 1,
        agent_version: "0.1.0".into(),
        product: "mtls-test".into(),
        hardware_class: "hw".into(),
        active: Slot::A,
        slot_a: slot("1.0.0"),
        slot_b: slot("0.9.0"),
        state: AgentState::Committed {
            version: "1.0.0".into(),
        },
        last_error: None,
        health: None,
    }
}

fn sealed_report(identity: &Identity, seq: u64) -> Vec<u8> {
    codec::seal(
        &Outgoing::Report(report()),
        identity.device_id(),
        seq,
        &identity.signing_key(),
    )
    .unwrap()
    .payload
}

#[test]
fn agent_with_its_certificate_enrolls_and_reports_over_https_and_mqtts() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let bg = server(&server_dir, MutualTls::Required);
    let ca = ca_of(&server_dir);
    let dir = tmp.path().join("device");
    let (identity, record) = enroll(&bg, &ca, &dir).unwrap();

    let client = record
        .client_identity(&dir)
        .expect("a client certificate was issued");
    assert!(
        std::fs::read_to_string(&client.cert)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    for file in [&client.key, &client.cert] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }

    // MQTTS with the certificate: a signed report reaches the server.
    let start = Instant::now();
    let mqtt = Mqtt::start_with_cert(
        &mqtts_settings(&record, &dir),
        Some(&client),
        &record.answer.device_id,
        &format!("halyard/v1/devices/{}/desired", record.answer.device_id),
        Box::new(|| None),
        None,
    );
    while mqtt.recv(std::time::Duration::from_millis(50)) != Some(Inbound::Connected) {
        assert!(
            start.elapsed() < TIMEOUT,
            "no MQTTS connection with the client certificate"
        );
    }
    eprintln!("MQTTS connect with a client certificate: {:?}", start.elapsed());
    let publication = codec::seal(
        &Outgoing::Report(report()),
        identity.device_id(),
        1,
        &identity.signing_key(),
    );
    mqtt.publish(publication.unwrap()).unwrap();
    let admin = halyard_server::ctl::Client::with_ca(&bg.url(), Some(bg.admin_token.clone()), &ca).unwrap();
    let start = Instant::now();
    loop {
        let device = admin
            .get(&format!("/api/v1/devices/{}", record.answer.device_id))
            .unwrap();
        if !device["device"]["report"].is_null() {
            break;
        }
        assert!(start.elapsed() < TIMEOUT, "the report never arrived: {device}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    mqtt.shutdown();

    // The HTTPS fallback with the certificate: desired (none yet) and a report.
    let api = device_api(&bg, &ca, Some(&client));
    assert_eq!(api.desired(identity.device_id()).unwrap(), None);
    api.post(identity.device_id(), "report", &sealed_report(&identity, 2))
        .unwrap();

    // Without the certificate the device endpoints refuse (401); enrollment needed none.
    let err = device_api(&bg, &ca, None)
        .desired(identity.device_id())
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
}

#[test]
fn connections_without_a_fleet_certificate_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let bg = server(&server_dir, MutualTls::Required);
    let ca = ca_of(&server_dir);
    let dir = tmp.path().join("device");
    let (identity, record) = enroll(&bg, &ca, &dir).unwrap();
    let addr = mqtts_addr(&record);
    let connect = connect_packet(&record.answer.device_id, Some(&record.answer.device_id));

    // MQTTS: no certificate, or one from another CA for the same device id: no MQTT at all.
    let none = tls_exchange(&ca, None, &addr, &connect);
    eprintln!("MQTTS without a client certificate: {none:?}");
    assert!(
        none.as_ref().is_err_and(|e| e.contains("CertificateRequired")),
        "{none:?}"
    );
    let foreign = foreign_identity(&tmp.path().join("foreign"), &record.answer.device_id);
    let other = tls_exchange(&ca, Some(&foreign), &addr, &connect);
    eprintln!("MQTTS with another CA's certificate: {other:?}");
    assert!(
        other
            .as_ref()
            .is_err_and(|e| e.contains("UnknownCA") || e.contains("BadCertificate")),
        "{other:?}"
    );
    // With its own certificate the same CONNECT is accepted (CONNACK, return code 0).
    let client = record.client_identity(&dir).unwrap();
    let ok = tls_exchange(&ca, Some(&client), &addr, &connect).unwrap();
    assert_eq!(ok.get(..4), Some(&[0x20, 0x02, 0x00, 0x00][..]), "{ok:?}");

    // HTTPS: another CA's certificate fails the handshake; none is a 401 on device endpoints.
    let err = device_api(&bg, &ca, Some(&foreign))
        .desired(identity.device_id())
        .unwrap_err();
    eprintln!("HTTPS with another CA's certificate: {err}");
    assert_eq!(err.status(), None, "refused in the handshake: {err}");
    let err = device_api(&bg, &ca, None)
        .post(identity.device_id(), "report", &sealed_report(&identity, 1))
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
}

#[test]
fn a_device_certificate_cannot_act_for_another_device() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let bg = server(&server_dir, MutualTls::Required);
    let ca = ca_of(&server_dir);
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (_, record_a) = enroll(&bg, &ca, &dir_a).unwrap();
    let (identity_b, record_b) = enroll(&bg, &ca, &dir_b).unwrap();
    let cert_a = record_a.client_identity(&dir_a).unwrap();
    let cert_b = record_b.client_identity(&dir_b).unwrap();

    // HTTPS: A's certificate on B's endpoints, even with a message B signed: 403.
    let as_a = device_api(&bg, &ca, Some(&cert_a));
    let err = as_a.desired(identity_b.device_id()).unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let err = as_a
        .post(identity_b.device_id(), "report", &sealed_report(&identity_b, 1))
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let as_b = device_api(&bg, &ca, Some(&cert_b));
    as_b.post(identity_b.device_id(), "report", &sealed_report(&identity_b, 2))
        .unwrap();

    // MQTTS: A's certificate with B's client id or username: CONNACK "not authorized", then closed.
    let addr = mqtts_addr(&record_a);
    let (a, b) = (
        record_a.answer.device_id.as_str(),
        record_b.answer.device_id.as_str(),
    );
    for connect in [
        connect_packet(b, Some(b)),
        connect_packet(a, Some(b)),
        connect_packet(b, None),
    ] {
        let got = tls_exchange(&ca, Some(&cert_a), &addr, &connect).unwrap();
        assert_eq!(got, [0x20, 0x02, 0x00, 0x05], "refused with return code 5");
    }
    let got = tls_exchange(&ca, Some(&cert_a), &addr, &connect_packet(a, None)).unwrap();
    assert_eq!(got.get(..4), Some(&[0x20, 0x02, 0x00, 0x00][..]));
}

#[test]
fn without_mtls_certificates_are_issued_but_not_required() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    let bg = server(&server_dir, MutualTls::Off);
    let ca = ca_of(&server_dir);
    let dir = tmp.path().join("device");
    let (identity, record) = enroll(&bg, &ca, &dir).unwrap();
    assert!(
        record.answer.client_cert.is_some(),
        "issued, ready for --mtls later"
    );
    assert_eq!(
        device_api(&bg, &ca, None).desired(identity.device_id()).unwrap(),
        None
    );
    let connect = connect_packet(&record.answer.device_id, None);
    let got = tls_exchange(&ca, None, &mqtts_addr(&record), &connect).unwrap();
    assert_eq!(got.get(..4), Some(&[0x20, 0x02, 0x00, 0x00][..]));
}
