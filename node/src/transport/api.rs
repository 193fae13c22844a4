//! [`ServerApi`]: the fleet server's device-facing HTTP(S) API (contract in `docs/protocol.md`):
//! enrollment with a one-time token, and the polling fallback (`GET …/desired`, `POST …/report`,
//! `POST …/events`) for devices that cannot reach the broker. Bodies are JSON; the desired state,
//! reports and events travel as the same signed envelopes as on MQTT, so verifying them is the
//! caller's business (`codec`), not this module's.

use std::io::Read;

use halyard_protocol::DeviceId;
use serde::{Deserialize, Serialize};

use super::http::{CaError, agent_with_cert};
use crate::client_cert::ClientIdentity;
use crate::config::HttpSettings;

/// Largest response body read (enrollment answers and desired envelopes are a few KiB).
const MAX_BODY: u64 = 256 * 1024;

/// A request to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No answer (connect, TLS, read): try again later.
    #[error("{method} {url}: {reason}")]
    Transport {
        /// Method.
        method: &'static str,
        /// URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with a status this call does not expect.
    #[error("{method} {url}: status {status}: {message}")]
    Status {
        /// Method.
        method: &'static str,
        /// URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The `error` field of a JSON error body, or the body's start.
        message: String,
    },
    /// The answer is not the JSON the contract says.
    #[error("{url}: malformed answer: {reason}")]
    Malformed {
        /// URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl ApiError {
    /// A later retry may succeed (no answer, or a server-side 5xx / 429).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Malformed { .. } => false,
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `POST /v1/enroll` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time token.
    pub token: String,
    /// Base64 (standard, padded) of the raw 32-byte Ed25519 public key.
    pub public_key: String,
    /// Product.
    pub product: String,
    /// Hardware class.
    pub hardware_class: String,
    /// Agent version.
    pub agent_version: String,
    /// Base64 of the DER SubjectPublicKeyInfo of the device's TLS key (sent to HTTPS servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
}

/// `POST /v1/enroll` answer (200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// Must equal `DeviceId::from_public_key` of the key sent.
    pub device_id: String,
    /// The server's Ed25519 public key, SPKI PEM.
    pub server_key: String,
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub broker: String,
    /// MQTT username (the device id), for brokers with per-device credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_username: Option<String>,
    /// MQTT password, issued once at enrollment (the server keeps only a hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt_password: Option<String>,
    /// The fleet CA (PEM) of a server with its own CA: pinned for HTTPS and MQTTS from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca: Option<String>,
    /// The client certificate (PEM) the fleet CA issued for `tls_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
}

/// The server's HTTP API at one base URL.
#[derive(Debug, Clone)]
pub struct ServerApi {
    agent: ureq::Agent,
    base: String,
}

impl ServerApi {
    /// For `base` (`server.url`, no trailing slash), with the download settings' CA and timeouts.
    pub fn new(base: &str, http: &HttpSettings) -> Result<Self, CaError> {
        Self::with_client_cert(base, http, None)
    }

    /// As [`ServerApi::new`], presenting `client` when the server asks for a client certificate.
    pub fn with_client_cert(
        base: &str,
        http: &HttpSettings,
        client: Option<&ClientIdentity>,
    ) -> Result<Self, CaError> {
        let (connect, read) = (http.connect_timeout, http.read_timeout);
        Ok(Self {
            agent: agent_with_cert(http.ca_file.as_deref(), client, connect, read)?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// `POST /v1/enroll`.
    pub fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse, ApiError> {
        let url = format!("{}/v1/enroll", self.base);
        let body = serde_json::to_vec(request).map_err(|e| malformed(&url, &e))?;
        let (status, bytes) = self.call("POST", &url, Some(&body))?;
        expect(&url, "POST", status, &bytes, 200)?;
        serde_json::from_slice(&bytes).map_err(|e| malformed(&url, &e))
    }

    /// `GET /v1/devices/{id}/desired`: the signed envelope (200), or `None` (204).
    pub fn desired(&self, device: &DeviceId) -> Result<Option<Vec<u8>>, ApiError> {
        let url = format!("{}/v1/devices/{device}/desired", self.base);
        let (status, bytes) = self.call("GET", &url, None)?;
        if status == 204 {
            return Ok(None);
        }
        expect(&url, "GET", status, &bytes, 200)?;
        Ok(Some(bytes))
    }

    /// `POST /v1/devices/{id}/{what}` (`report` or `events`) with a signed envelope; 202 expected.
    pub fn post(&self, device: &DeviceId, what: &str, envelope: &[u8]) -> Result<(), ApiError> {
        let url = format!("{}/v1/devices/{device}/{what}", self.base);
        let (status, bytes) = self.call("POST", &url, Some(envelope))?;
        expect(&url, "POST", status, &bytes, 202)
    }

    fn call(&self, method: &'static str, url: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), ApiError> {
        let transport = |reason: String| ApiError::Transport {
            method,
            url: url.to_owned(),
            reason,
        };
        let resp = match body {
            Some(body) => self
                .agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(body),
            None => self.agent.get(url).call(),
        }
        .map_err(|e| transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        resp.into_body()
            .into_reader()
            .take(MAX_BODY)
            .read_to_end(&mut bytes)
            .map_err(|e| transport(e.to_string()))?;
        tracing::debug!(method, url, status, bytes = bytes.len(), "server API");
        Ok((status, bytes))
    }
}

fn expect(url: &str, method: &'static str, status: u16, body: &[u8], want: u16) -> Result<(), ApiError> {
    if status == want {
        return Ok(());
    }
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    Err(ApiError::Status {
        method,
        url: url.to_owned(),
        status,
        message,
    })
}

fn malformed(url: &str, e: &serde_json::Error) -> ApiError {
    ApiError::Malformed {
        url: url.to_owned(),
        reason: e.to_string(),
    }
}
