//! The broker URL of the server's own MQTT connection, and TLS for it: `mqtts://host:port` to an
//! external broker goes through rustls with the ring provider, trusting only the CA certificates in
//! `Settings::broker_ca` (a private CA's PEM, or the system bundle for a broker with a public
//! certificate). The broker's certificate must name the URL's host (DNS name or IP address).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The broker URL could not be used.
#[derive(Debug, thiserror::Error)]
#[error("broker URL {url:?}: {why}")]
pub struct BrokerUrlError {
    pub url: String,
    pub why: &'static str,
}

/// The CA file for an `mqtts://` broker is missing or unusable.
#[derive(Debug, thiserror::Error)]
pub enum BrokerTlsError {
    #[error("broker URL {0:?} is mqtts:// but no broker CA file is set (--mqtt-ca-file)")]
    NoCa(String),
    #[error("broker CA file {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
}

/// Where the server's MQTT client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    /// `mqtts://` (or `ssl://`): TLS to the broker.
    pub tls: bool,
}

impl BrokerUrl {
    /// `mqtt://host:port` or `tcp://` (port defaults to 1883); `mqtts://host:port` or `ssl://` (8883).
    pub fn parse(url: &str) -> Result<Self, BrokerUrlError> {
        let err = |why| BrokerUrlError {
            url: url.to_owned(),
            why,
        };
        let schemes = [
            ("mqtt://", false),
            ("tcp://", false),
            ("mqtts://", true),
            ("ssl://", true),
        ];
        let (rest, tls) = schemes
            .iter()
            .find_map(|(scheme, tls)| url.strip_prefix(scheme).map(|rest| (rest, *tls)))
            .ok_or_else(|| err("expected mqtt://host:port or mqtts://host:port"))?;
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| err("bad port"))?),
            None => (rest, default_port),
        };
        let host = host.trim_matches(['[', ']']);
        if host.is_empty() {
            return Err(err("no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

/// The rumqttc transport for `url`: TLS trusting the certificates in `ca`, or plain TCP.
pub fn transport(url: &BrokerUrl, raw: &str, ca: Option<&Path>) -> Result<Transport, BrokerTlsError> {
    if !url.tls {
        return Ok(Transport::Tcp);
    }
    let ca = ca.ok_or_else(|| BrokerTlsError::NoCa(raw.to_owned()))?;
    let config = client_config(ca)?;
    Ok(Transport::tls_with_config(TlsConfiguration::Rustls(config)))
}

/// A rustls client config (ring, TLS 1.2 and 1.3) trusting only the certificates in the PEM file `ca`.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, BrokerTlsError> {
    let fail = |reason: String| BrokerTlsError::Ca {
        path: ca.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(fail("no usable CA certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_default_ports() {
        let url = |u| BrokerUrl::parse(u).map(|b| (b.host, b.port, b.tls)).ok();
        let own = |h: &str, p, t| Some((h.to_owned(), p, t));
        assert_eq!(url("mqtt://broker"), own("broker", 1883, false));
        assert_eq!(url("tcp://10.0.0.1:1884/"), own("10.0.0.1", 1884, false));
        assert_eq!(url("mqtts://broker"), own("broker", 8883, true));
        assert_eq!(url("ssl://broker:8884"), own("broker", 8884, true));
        assert_eq!(url("mqtts://[::1]:8883"), own("::1", 8883, true));
        for bad in ["http://broker", "mqtt://", "mqtts://:8883", "mqtt://h:port"] {
            assert_eq!(url(bad), None, "{bad}");
        }
    }

    #[test]
    fn mqtts_needs_a_usable_ca_file() {
        let url = BrokerUrl::parse("mqtts://broker").unwrap();
        assert!(matches!(
            transport(&url, "mqtts://broker", None),
            Err(BrokerTlsError::NoCa(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            transport(&url, "mqtts://broker", Some(&empty)),
            Err(BrokerTlsError::Ca { .. })
        ));
        let plain = BrokerUrl::parse("mqtt://broker").unwrap();
        assert!(matches!(
            transport(&plain, "mqtt://broker", None),
            Ok(Transport::Tcp)
        ));
    }
}
