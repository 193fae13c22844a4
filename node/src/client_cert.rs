//! The device's TLS client identity for mutual TLS: an ECDSA P-256 key made on the device (PKCS#8
//! PEM, mode 0600, `client-key.pem` in the data directory, readable by `openssl`) and the certificate
//! the server's fleet CA issues for it at enrollment (`client.pem`). The key never leaves the device:
//! enrollment sends only its public key (SubjectPublicKeyInfo DER). The agent presents the pair on
//! HTTPS and MQTTS when a server asks for a client certificate.
//!
//! This key is separate from the Ed25519 identity key that signs every message: one key, one use.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};

use crate::durable;
use crate::enroll::EnrollError;
use crate::faults::CrashPoints;
use crate::transport::http::CaError;

/// The TLS key's file name in the data directory.
pub const KEY_FILE: &str = "client-key.pem";
/// The client certificate's file name in the data directory.
pub const CERT_FILE: &str = "client.pem";

/// DER prefix of a P-256 SubjectPublicKeyInfo up to the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A client certificate and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// PKCS#8 private key (PEM).
    pub key: PathBuf,
}

impl ClientIdentity {
    /// The pair in the data directory `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join(CERT_FILE),
            key: dir.join(KEY_FILE),
        }
    }

    fn read(
        &self,
    ) -> Result<
        (
            Vec<ureq::tls::Certificate<'static>>,
            ureq::tls::PrivateKey<'static>,
        ),
        CaError,
    > {
        let certs = crate::transport::http::read_certs(&self.cert)?;
        let fail = |reason: String| CaError {
            path: self.key.clone(),
            reason,
        };
        let pem = std::fs::read(&self.key).map_err(|e| fail(e.to_string()))?;
        let key = ureq::tls::PrivateKey::from_pem(&pem).map_err(|e| fail(e.to_string()))?;
        Ok((certs, key))
    }

    /// For the HTTPS client (ureq).
    pub fn for_ureq(&self) -> Result<ureq::tls::ClientCert, CaError> {
        let (certs, key) = self.read()?;
        Ok(ureq::tls::ClientCert::new_with_certs(&certs, key))
    }

    /// For the MQTTS client (rustls).
    pub fn for_rustls(
        &self,
    ) -> Result<
        (
            Vec<rustls::pki_types::CertificateDer<'static>>,
            rustls::pki_types::PrivateKeyDer<'static>,
        ),
        CaError,
    > {
        let (certs, key) = self.read()?;
        let chain = certs
            .iter()
            .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
            .collect();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(key.der().to_vec());
        Ok((chain, key.into()))
    }
}

/// The SubjectPublicKeyInfo (DER) of the device's TLS key in `dir`, making the key first when there
/// is none.
pub fn ensure_key(dir: &Path, crash: &dyn CrashPoints) -> Result<Vec<u8>, EnrollError> {
    let path = dir.join(KEY_FILE);
    let invalid = |reason: String| EnrollError::Invalid {
        what: path.display().to_string(),
        reason,
    };
    let rng = SystemRandom::new();
    let pkcs8 = match durable::read_optional(&path)? {
        Some(pem) => ureq::tls::PrivateKey::from_pem(&pem)
            .map_err(|e| invalid(e.to_string()))?
            .der()
            .to_vec(),
        None => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .map_err(|_| invalid("key generation failed".into()))?;
            durable::write_atomic(&path, pem("PRIVATE KEY", doc.as_ref()).as_bytes(), 0o600, crash)?;
            tracing::info!(path = %path.display(), "made the TLS client key");
            doc.as_ref().to_vec()
        }
    };
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
        .map_err(|e| invalid(format!("not an ECDSA P-256 PKCS#8 key: {e}")))?;
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok(spki)
}

/// Stores the certificate the server issued (`pem`) beside the key.
pub fn store_cert(dir: &Path, pem: &str, crash: &dyn CrashPoints) -> Result<(), EnrollError> {
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(EnrollError::Invalid {
            what: "answer".into(),
            reason: "client_cert is not a PEM certificate".into(),
        });
    }
    durable::write_atomic(&dir.join(CERT_FILE), pem.as_bytes(), 0o600, crash)?;
    Ok(())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::faults::NoCrash;

    #[test]
    fn key_is_made_once_kept_private_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let first = ensure_key(tmp.path(), &NoCrash).unwrap();
        assert_eq!(first.len(), 91);
        assert_eq!(ensure_key(tmp.path(), &NoCrash).unwrap(), first, "the same key");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(tmp.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(ensure_key(other.path(), &NoCrash).unwrap(), first);
    }
}
