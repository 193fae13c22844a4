//! TLS for devices (rustls with the ring provider): the HTTPS listener, an MQTTS front for the
//! embedded broker, and the certificates.
//!
//! With [`TlsSettings::SelfSigned`] the server makes its own fleet CA on first start
//! (`<data>/tls/ca.pem`, key `ca-key.pem` mode 0600, ECDSA P-256, rcgen) and, at every start, a
//! fresh server certificate for the configured names signed by it (`server.pem`, `server-key.pem`;
//! a Mosquitto TLS listener can use the same files). Devices get the CA PEM at enrollment and trust
//! only it from then on. [`TlsSettings::Files`] uses an operator's certificate instead.
//!
//! rcgen is built without its X.509 parser, so the CA is re-created as an issuer from its key: the
//! CA's subject is derived from its public key ("Halyard fleet CA <8 hex>") and is therefore the same
//! at every start without reading the stored certificate back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::mqtt_connect;
use crate::mtls::{ClientAuth, MutualTls};
use crate::secrets::write_private;

/// How the server gets its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSettings {
    /// Own CA in `<data>/tls/`, server certificate for these DNS names and IP addresses.
    SelfSigned { names: Vec<String> },
    /// Operator-provided PEM files: certificate chain, key, and optionally the CA handed to devices.
    Files {
        cert: PathBuf,
        key: PathBuf,
        ca: Option<PathBuf>,
    },
}

/// TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("making certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The server's certificate, key and (when it has one) the CA devices should pin.
#[derive(Debug, Clone)]
pub struct Material {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    /// CA certificate PEM handed to devices at enrollment.
    pub ca_pem: Option<String>,
    /// The fleet CA as a signer of device certificates (only with the server's own CA).
    pub ca: Option<crate::mtls::FleetCa>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads or makes the certificate material for `settings`.
pub fn material(settings: &TlsSettings, data_dir: &Path) -> Result<Material, TlsError> {
    match settings {
        TlsSettings::SelfSigned { names } => self_signed(&data_dir.join("tls"), names),
        TlsSettings::Files { cert, key, ca } => from_files(cert, key, ca.as_deref()),
    }
}

fn pem_err(path: &Path) -> impl FnOnce(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn from_files(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<Material, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(pem_err(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(cert))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key))?;
    let ca_pem = match ca {
        Some(path) => Some(std::fs::read_to_string(path).map_err(io_err(path))?),
        None => None,
    };
    Ok(Material {
        chain,
        key: Arc::new(key_der),
        ca_pem,
        ca: None,
    })
}

/// The CA's parameters, a pure function of its key (so the issuer is the same at every start).
fn ca_params(key: &KeyPair) -> Result<CertificateParams, TlsError> {
    let tag = hex::encode(&sha2::Sha256::digest(key.public_key_raw())[..4]);
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Halyard");
    dn.push(DnType::CommonName, format!("Halyard fleet CA {tag}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    Ok(params)
}

fn self_signed(dir: &Path, names: &[String]) -> Result<Material, TlsError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let (key_path, ca_path) = (dir.join("ca-key.pem"), dir.join("ca.pem"));
    if !key_path.exists() {
        let key = KeyPair::generate()?;
        let cert = ca_params(&key)?.self_signed(&key)?;
        std::fs::write(&ca_path, cert.pem()).map_err(io_err(&ca_path))?;
        write_private(&key_path, key.serialize_pem().as_bytes()).map_err(|e| TlsError::Pem {
            path: key_path.display().to_string(),
            reason: e.to_string(),
        })?;
        tracing::info!(path = %ca_path.display(), "created the fleet CA");
    }
    let ca_key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let ca_pem = std::fs::read_to_string(&ca_path).map_err(io_err(&ca_path))?;
    let issuer = Issuer::new(ca_params(&ca_key)?, ca_key);
    let server_key = KeyPair::generate()?;
    let (chain, server_key) = server_cert(dir, names, &issuer, &server_key, &ca_pem)?;
    Ok(Material {
        chain,
        key: Arc::new(server_key),
        ca_pem: Some(ca_pem),
        ca: Some(crate::mtls::FleetCa::new(issuer)),
    })
}

/// A fresh server certificate for `names` signed by the fleet CA, written beside it.
fn server_cert(
    dir: &Path,
    names: &[String],
    issuer: &Issuer<'static, KeyPair>,
    server_key: &KeyPair,
    ca_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.signed_by(server_key, issuer)?;
    let (cert_path, server_key_path) = (dir.join("server.pem"), dir.join("server-key.pem"));
    std::fs::write(&cert_path, format!("{}{ca_pem}", cert.pem())).map_err(io_err(&cert_path))?;
    write_private(&server_key_path, server_key.serialize_pem().as_bytes()).map_err(|e| TlsError::Pem {
        path: server_key_path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    ))
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3); client certificates as `clients`
/// says, checked against the fleet CA.
pub fn acceptor(material: &Material, clients: ClientAuth) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let ca_pem = material.ca_pem.as_deref().unwrap_or_default();
    let builder = match crate::mtls::verifier(ca_pem, clients)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(material.chain.clone(), material.key.clone_key())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A TLS handshake longer than this is dropped (a slow client must not hold a task forever).
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Accepts TCP connections and completes TLS handshakes off the accept loop; `axum::serve` takes it
/// like a `TcpListener`. Failed handshakes (for example a client that does not trust our CA) are
/// logged at debug level and dropped.
#[derive(Debug)]
pub struct TlsListener {
    local: std::net::SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, ready) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => drop(ready.send((tls, peer)).await),
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Self { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// MQTTS for the embedded broker: terminates TLS on `listener` and pipes each connection to the
/// broker's plain listener at `broker` (loopback), until `stop` turns true. With
/// [`MutualTls::Required`] the acceptor demands a fleet certificate and a connection's CONNECT must
/// name the certificate's device as client id (and username, if it sends one).
pub fn spawn_mqtts_front(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    broker: std::net::SocketAddr,
    mtls: MutualTls,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(_) => continue,
                },
                _ = stop.changed() => return,
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "MQTTS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "MQTTS handshake timed out"),
                };
                let first = match mtls {
                    MutualTls::Off => Vec::new(),
                    MutualTls::Required => match device_connect(&mut tls).await {
                        Some(packet) => packet,
                        None => return,
                    },
                };
                let Ok(mut plain) = TcpStream::connect(broker).await else {
                    return tracing::warn!(%broker, "MQTTS: embedded broker unreachable");
                };
                if plain.write_all(&first).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
}

/// The CONNECT of a connection with a device certificate, when it names that device; otherwise the
/// client is told "not authorized" (logged at info: a device trying another's id) and `None`.
async fn device_connect(tls: &mut TlsStream<TcpStream>) -> Option<Vec<u8>> {
    let device = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(crate::mtls::device_of);
    let packet = match tokio::time::timeout(HANDSHAKE, mqtt_connect::read(tls)).await {
        Ok(Ok(Some(packet))) => packet,
        _ => return None,
    };
    let ids = mqtt_connect::ids(&packet);
    let named = |id: &str| device.as_ref().is_some_and(|d| d.as_str() == id);
    match &ids {
        Some(i) if named(&i.client_id) && i.username.as_deref().is_none_or(named) => Some(packet),
        _ => {
            tracing::info!(device = ?device, connect = ?ids, "MQTTS: CONNECT does not match the client certificate");
            let _ = tls.write_all(&mqtt_connect::CONNACK_NOT_AUTHORIZED).await;
            let _ = tls.shutdown().await;
            None
        }
    }
}
