//! Device endpoints: enrollment with a one-time token, and the HTTPS fallback for devices that cannot
//! reach MQTT (`GET desired`, `POST report|events|presence` with the same signed envelopes).

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use halyard_protocol::{DeviceId, Topic};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult};
use crate::app::App;
use crate::ingest::{self, IngestError};
use crate::model::NewDevice;
use crate::mtls::{MutualTls, Peer};
use crate::secrets::token_hash;
use crate::store::EnrollOutcome;

/// `POST /v1/enroll` body.
#[derive(Debug, Deserialize)]
pub struct EnrollRequest {
    pub token: String,
    /// Base64 of the raw 32-byte Ed25519 public key.
    pub public_key: String,
    pub product: String,
    pub hardware_class: String,
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Base64 of the DER SubjectPublicKeyInfo of the device's TLS key (ECDSA P-256), made on the
    /// device: a server with its own CA answers with a client certificate for it.
    #[serde(default)]
    pub tls_key: Option<String>,
}

/// `POST /v1/enroll` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub device_id: DeviceId,
    /// SPKI PEM of the key that signs every `desired`.
    pub server_key: String,
    pub broker: String,
    /// MQTT username (the device id) and a fresh password; the server keeps only its hash.
    #[serde(default)]
    pub mqtt_username: Option<String>,
    #[serde(default)]
    pub mqtt_password: Option<String>,
    /// The fleet CA (PEM) when the server speaks TLS: the device trusts only it from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca: Option<String>,
    /// The device's TLS client certificate (PEM), signed by the fleet CA, for `tls_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
}

fn label_ok(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub async fn enroll(
    State(app): State<Arc<App>>,
    Json(req): Json<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    let tls_key = match &req.tls_key {
        Some(k) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .map_err(|_| ApiError::bad_request("tls_key must be base64 (DER SubjectPublicKeyInfo)"))?,
        ),
        None => None,
    };
    let usable = tls_key.as_deref().is_some_and(crate::mtls::is_p256_key);
    if app.settings.mtls == MutualTls::Required && !usable {
        return Err(ApiError::bad_request(
            "this server requires mutual TLS: tls_key must be an ECDSA P-256 SubjectPublicKeyInfo",
        ));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(req.public_key.trim())
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| ApiError::bad_request("public_key must be base64 of a raw 32-byte Ed25519 key"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&raw)
        .map_err(|_| ApiError::bad_request("public_key is not a valid Ed25519 point"))?;
    if !label_ok(&req.product) || !label_ok(&req.hardware_class) {
        return Err(ApiError::bad_request(
            "product and hardware_class must be 1-64 characters of [A-Za-z0-9._-]",
        ));
    }
    let new = NewDevice {
        id: DeviceId::from_public_key(&raw),
        public_key: hex::encode(raw),
        product: req.product,
        hardware_class: req.hardware_class,
    };
    let (hash, now, to_store) = (token_hash(req.token.trim()), app.now(), new.clone());
    match app.db(move |s| s.enroll(&hash, &to_store, now)).await? {
        EnrollOutcome::Enrolled(d) => {
            tracing::info!(device = %d.id, hw = %d.hardware_class, site = ?d.site, agent = ?req.agent_version, "device enrolled");
            app.notify("device", d.id.as_str());
            let client_cert = client_cert(&app, &d.id, tls_key.as_deref())?;
            let password = match app.settings.broker_credentials {
                true => {
                    let password = crate::broker_auth::issue(&app, &d.id)
                        .await
                        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
                    app.broker_changed.notify_one();
                    Some(password)
                }
                false => None,
            };
            Ok(Json(EnrollResponse {
                mqtt_username: password.as_ref().map(|_| d.id.to_string()),
                mqtt_password: password,
                server_ca: app.tls.as_ref().and_then(|t| t.ca_pem.clone()),
                client_cert,
                device_id: d.id,
                server_key: app.server_key_pem.clone(),
                broker: app.device_broker_url.clone(),
            }))
        }
        EnrollOutcome::BadToken => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "enrollment token unknown, expired or already used",
        )),
        EnrollOutcome::KeyConflict => Err(ApiError::conflict(format!(
            "device {} is already enrolled with other data",
            new.id
        ))),
    }
}

/// A client certificate for the device's TLS key, when the server has its own CA and the agent sent
/// a usable key (P-256).
fn client_cert(app: &App, device: &DeviceId, tls_key: Option<&[u8]>) -> ApiResult<Option<String>> {
    let ca = app.tls.as_ref().and_then(|t| t.ca.as_ref());
    match (ca, tls_key) {
        (Some(ca), Some(key)) => ca
            .issue(device, key)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        _ => Ok(None),
    }
}

fn device_id(id: &str) -> ApiResult<DeviceId> {
    DeviceId::new(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The request's device id, when the connection may act for it: with mutual TLS required, only a
/// connection whose client certificate names that device (401 without one, 403 with another's).
fn authorized(app: &App, peer: Option<&Peer>, id: &str) -> ApiResult<DeviceId> {
    let id = device_id(id)?;
    if app.settings.mtls == MutualTls::Off {
        return Ok(id);
    }
    match peer.and_then(|p| p.device.as_ref()) {
        Some(device) if *device == id => Ok(id),
        Some(device) => {
            tracing::warn!(%device, claimed = %id, "device API: certificate of another device");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("the client certificate is {device}'s, not {id}'s"),
            ))
        }
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this server requires the device's client certificate",
        )),
    }
}

type PeerInfo = Option<Extension<ConnectInfo<Peer>>>;

pub async fn desired(
    State(app): State<Arc<App>>,
    peer: PeerInfo,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = authorized(&app, peer.as_ref().map(|p| &p.0.0), &id)?;
    let found = app.db(move |s| s.desired(&id)).await?;
    Ok(match found {
        Some(d) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            d.envelope,
        )
            .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

pub async fn message(
    State(app): State<Arc<App>>,
    peer: PeerInfo,
    Path((id, topic)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let id = authorized(&app, peer.as_ref().map(|p| &p.0.0), &id)?;
    let topic = match topic.as_str() {
        "report" => Topic::Report,
        "events" => Topic::Events,
        "presence" => Topic::Presence,
        _ => return Err(ApiError::not_found(format!("no device topic {topic:?}"))),
    };
    match ingest::one(&app, &id, topic, &body).await {
        Ok(()) => Ok(StatusCode::ACCEPTED),
        Err(e) => Err(ingest_error(e)),
    }
}

fn ingest_error(e: IngestError) -> ApiError {
    let status = match &e {
        IngestError::Envelope(halyard_protocol::EnvelopeError::BadSignature { .. })
        | IngestError::UnknownDevice(_) => StatusCode::UNAUTHORIZED,
        IngestError::Replay { .. } => StatusCode::CONFLICT,
        IngestError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.to_string())
}
