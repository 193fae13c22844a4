//! Mutual TLS for devices: client certificates issued at enrollment by the fleet CA, and the checks
//! that use them.
//!
//! The agent makes its TLS key (ECDSA P-256) on the device and sends only the public key
//! (SubjectPublicKeyInfo DER, base64) with its enrollment; the server's own CA (`--tls auto`) signs a
//! client certificate for it: subject CN = the device id (what Mosquitto's `use_identity_as_username`
//! takes), SAN URI `urn:halyard:device:<id>` (what this server reads back), EKU clientAuth. A server
//! with its own CA issues one to every agent that asks, so turning [`MutualTls::Required`] on later
//! needs no re-enrollment of devices that enrolled over HTTPS.
//!
//! With [`MutualTls::Required`]: the MQTTS front accepts only connections with a certificate that
//! chains to the fleet CA and whose MQTT CONNECT names that device (see [`crate::mqtt_connect`]);
//! the HTTPS listener asks for a certificate and verifies any presented one (enrollment and the
//! operator API still work without one), and the device endpoints (`/v1/devices/{id}/...`) refuse a
//! request without one (401) or with another device's (403). Artifacts stay readable without one:
//! bundles are signed, and their URLs may point to a CDN that knows nothing of the fleet CA.

use std::sync::Arc;

use halyard_protocol::DeviceId;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SignatureAlgorithm,
};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::server::danger::ClientCertVerifier;

use crate::tls::TlsError;

/// Whether devices must present a client certificate from the fleet CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MutualTls {
    /// No client certificates are asked for (they are still issued when the server has its own CA).
    #[default]
    Off,
    /// Device connections (MQTTS, the device HTTP endpoints) need the device's own certificate.
    Required,
}

/// The SAN URI prefix that names the device in its certificate.
pub const DEVICE_URI: &str = "urn:halyard:device:";

/// How long a device certificate is valid. There is no renewal yet, so it is long: the device keeps
/// it for its service life, like its identity key. Revocation is by retiring the device.
const DEVICE_CERT_DAYS: i64 = 3650;

/// The fleet CA as the signer of device certificates.
#[derive(Clone)]
pub struct FleetCa {
    issuer: Arc<Issuer<'static, KeyPair>>,
}

impl std::fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCa").finish_non_exhaustive()
    }
}

/// DER prefix of a SubjectPublicKeyInfo for an ECDSA P-256 key (id-ecPublicKey, prime256v1), up to
/// the BIT STRING holding the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A device's P-256 public key (the uncompressed point), as rcgen wants it.
struct P256Public(Vec<u8>);

impl PublicKeyData for P256Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// Whether `spki` (DER) is an ECDSA P-256 SubjectPublicKeyInfo with an uncompressed point.
pub fn is_p256_key(spki: &[u8]) -> bool {
    p256_point(spki).is_some()
}

/// The uncompressed point of a P-256 SubjectPublicKeyInfo (the only key type devices make).
fn p256_point(spki: &[u8]) -> Option<&[u8]> {
    let point = spki.strip_prefix(&P256_SPKI_PREFIX[..])?;
    (point.len() == 65 && point[0] == 0x04).then_some(point)
}

impl FleetCa {
    pub fn new(issuer: Issuer<'static, KeyPair>) -> Self {
        Self {
            issuer: Arc::new(issuer),
        }
    }

    /// A client certificate (PEM) for `device` and its P-256 public key `spki` (DER); `None` when the
    /// key is not an uncompressed P-256 SubjectPublicKeyInfo.
    pub fn issue(&self, device: &DeviceId, spki: &[u8]) -> Result<Option<String>, TlsError> {
        let Some(point) = p256_point(spki) else {
            return Ok(None);
        };
        // A point off the curve gets a certificate nobody can use (no TLS handshake can sign for it).
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Halyard");
        params
            .distinguished_name
            .push(DnType::CommonName, device.as_str());
        let uri = format!("{DEVICE_URI}{device}");
        params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial()?.into());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(DEVICE_CERT_DAYS);
        let cert = params.signed_by(&P256Public(point.to_vec()), &self.issuer)?;
        Ok(Some(cert.pem()))
    }
}

/// A positive random 128-bit serial number.
fn serial() -> Result<Vec<u8>, TlsError> {
    let mut bytes = vec![0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| TlsError::Pem {
        path: "serial number".into(),
        reason: e.to_string(),
    })?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(bytes)
}

/// The device a (verified) client certificate names in its SAN URI.
pub fn device_of(cert: &CertificateDer<'_>) -> Option<DeviceId> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    let id = cert
        .valid_uri_names()
        .find_map(|uri| uri.strip_prefix(DEVICE_URI))?;
    DeviceId::new(id).ok()
}

/// Client certificate checking for a TLS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Do not ask for one.
    None,
    /// Ask; verify one that is presented against the fleet CA; accept connections without one.
    Optional,
    /// Demand one that chains to the fleet CA.
    Required,
}

/// The rustls verifier for `auth` trusting only the CA certificates in `ca_pem`; `None` for
/// [`ClientAuth::None`].
pub fn verifier(ca_pem: &str, auth: ClientAuth) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    if auth == ClientAuth::None {
        return Ok(None);
    }
    let pem_err = |reason: String| TlsError::Pem {
        path: "fleet CA".into(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| pem_err(e.to_string()))?)
            .map_err(|e| pem_err(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        _ => builder,
    };
    let verifier = builder
        .build()
        .map_err(|e| pem_err(format!("client verifier: {e}")))?;
    Ok(Some(verifier))
}

/// Who is on the other end of an HTTPS connection: axum's connect info for the device endpoints.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: std::net::SocketAddr,
    /// The device named by a verified client certificate.
    pub device: Option<DeviceId>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        let (_, conn) = stream.io().get_ref();
        Self {
            addr: *stream.remote_addr(),
            device: conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(device_of),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ca() -> FleetCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        FleetCa::new(Issuer::new(params, key))
    }

    #[test]
    fn issued_certificate_names_the_device_and_only_p256_keys_are_signed() {
        let device_key = KeyPair::generate().unwrap();
        let spki = device_key.subject_public_key_info();
        let id = DeviceId::new("dev-0123456789abcdef0123456789abcdef").unwrap();
        let pem = ca().issue(&id, &spki).unwrap().unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(device_of(&der), Some(id.clone()));

        let mut wrong = spki.clone();
        wrong[0] = 0x31;
        assert_eq!(ca().issue(&id, &wrong).unwrap(), None);
        assert_eq!(ca().issue(&id, &spki[..spki.len() - 1]).unwrap(), None);
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_eq!(ca().issue(&id, &ed.subject_public_key_info()).unwrap(), None);
    }
}
