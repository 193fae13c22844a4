//! Enrollment with a one-time token (contract in `docs/protocol.md`): the agent sends its public key
//! and the token to `POST {server.url}/v1/enroll`, checks that the device id the server assigned is
//! the one derived from that key and that the server key parses, and stores the answer atomically
//! in the data directory (`enrollment.json`). From then on the stored server key verifies every
//! `desired`; the config's `server_key` file is the fallback for pre-provisioned devices.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::client_cert::{self, ClientIdentity};
use crate::config::MqttCredentials;
use crate::durable::{self, FileError};
use crate::faults::CrashPoints;
use crate::identity::Identity;
use crate::transport::api::{ApiError, EnrollRequest, EnrollResponse, ServerApi};

/// The enrollment record's file name in the data directory.
pub const RECORD_FILE: &str = "enrollment.json";

/// The pinned fleet CA's file name in the data directory (when the server handed one out).
pub const CA_FILE: &str = "server-ca.pem";

/// Enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The record or the token file could not be read or written.
    #[error("enrollment: {0}")]
    File(#[from] FileError),
    /// The server did not enroll the device (401: unknown or used token; 409: the key is enrolled
    /// with other data), or could not be reached.
    #[error("enrollment refused or failed: {0}")]
    Api(#[from] ApiError),
    /// The answer or the stored record is unusable.
    #[error("enrollment {what}: {reason}")]
    Invalid {
        /// What (the server's answer, or the record's path).
        what: String,
        /// Why.
        reason: String,
    },
}

impl EnrollError {
    /// Retrying later may help (the server was unreachable or failed on its side).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Api(e) if e.is_transient())
    }
}

/// What the server handed out at enrollment, as stored (mode 0600, like the identity key beside it:
/// it holds the MQTT password). The answer's fields stand at the top level of `enrollment.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The server's answer, checked: its device id is this device's, its key parses, its broker is
    /// `mqtt(s)://`; its `server_ca` (if any) is the only authority trusted for this server from now
    /// on (written to [`CA_FILE`] beside the record), its `client_cert` (if any) is also in
    /// `client.pem` beside the device's TLS key.
    #[serde(flatten)]
    pub answer: EnrollResponse,
    /// The server URL enrolled with.
    pub server_url: String,
}

impl Enrollment {
    /// The CA file to trust for this server: the pinned one from enrollment, if the server gave one.
    pub fn ca_file(&self, dir: &Path) -> Option<PathBuf> {
        self.answer.server_ca.as_ref().map(|_| dir.join(CA_FILE))
    }

    /// The client certificate and key to present (mutual TLS), if the server issued one.
    pub fn client_identity(&self, dir: &Path) -> Option<ClientIdentity> {
        self.answer
            .client_cert
            .as_ref()
            .map(|_| ClientIdentity::in_dir(dir))
    }

    /// The broker account the server issued, if any.
    pub fn credentials(&self) -> Option<MqttCredentials> {
        Some(MqttCredentials {
            username: self.answer.mqtt_username.clone()?,
            password: self.answer.mqtt_password.clone()?,
        })
    }

    /// The server key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, EnrollError> {
        parse_key(&self.answer.server_key).map_err(|reason| EnrollError::Invalid {
            what: "server key".into(),
            reason,
        })
    }
}

/// The stored record, if the device has enrolled.
pub fn load(dir: &Path) -> Result<Option<Enrollment>, EnrollError> {
    let path = dir.join(RECORD_FILE);
    let Some(bytes) = durable::read_optional(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| EnrollError::Invalid {
            what: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// The token to enroll with: `token`, else the trimmed content of `token_file`; `None` when neither
/// is set (or the file is empty).
pub fn token(token: Option<&str>, token_file: Option<&Path>) -> Result<Option<String>, EnrollError> {
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        return Ok(Some(t.to_owned()));
    }
    let Some(path) = token_file else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).map_err(durable::io_err(path, "read"))?;
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    Ok((!text.is_empty()).then_some(text))
}

/// What the device tells the server about itself.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Product.
    pub product: String,
    /// Hardware class.
    pub hardware_class: String,
}

/// Enroll with `token` and store the answer atomically in `dir`.
pub fn enroll(
    api: &ServerApi,
    server_url: &str,
    identity: &Identity,
    token: &str,
    facts: &Facts,
    dir: &Path,
    crash: &dyn CrashPoints,
) -> Result<Enrollment, EnrollError> {
    // A server reached over HTTPS may issue a client certificate: offer the device's TLS key.
    let tls_key = match server_url.starts_with("https://") {
        true => Some(base64::engine::general_purpose::STANDARD.encode(client_cert::ensure_key(dir, crash)?)),
        false => None,
    };
    let request = EnrollRequest {
        token: token.to_owned(),
        public_key: base64::engine::general_purpose::STANDARD.encode(identity.public_key()),
        product: facts.product.clone(),
        hardware_class: facts.hardware_class.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        tls_key,
    };
    let answer = api.enroll(&request)?;
    let invalid = |reason: String| EnrollError::Invalid {
        what: "answer".into(),
        reason,
    };
    if answer.device_id != identity.device_id().as_str() {
        return Err(invalid(format!(
            "device id {} is not {}, the id of this device's key",
            answer.device_id,
            identity.device_id()
        )));
    }
    parse_key(&answer.server_key).map_err(invalid)?;
    if !(answer.broker.starts_with("mqtt://") || answer.broker.starts_with("mqtts://")) {
        return Err(invalid(format!(
            "broker {:?} is not mqtt(s)://host:port",
            answer.broker
        )));
    }
    if let Some(pem) = &answer.client_cert {
        client_cert::store_cert(dir, pem, crash)?;
    }
    if let Some(pem) = &answer.server_ca {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(invalid("server_ca is not a PEM certificate".into()));
        }
        durable::write_atomic(&dir.join(CA_FILE), pem.as_bytes(), 0o644, crash)?;
    }
    let record = Enrollment {
        answer,
        server_url: server_url.to_owned(),
    };
    let bytes = serde_json::to_vec_pretty(&record).map_err(|e| invalid(e.to_string()))?;
    durable::write_atomic(&record_path(dir), &bytes, 0o600, crash)?;
    tracing::info!(device = %record.answer.device_id, broker = %record.answer.broker, "enrolled");
    Ok(record)
}

fn record_path(dir: &Path) -> PathBuf {
    dir.join(RECORD_FILE)
}

fn parse_key(pem: &str) -> Result<VerifyingKey, String> {
    let key = halyard_ota::keys::PublicKey::from_pem(pem).map_err(|e| e.to_string())?;
    VerifyingKey::from_bytes(&key.to_raw()).map_err(|e| e.to_string())
}
