//! Enrollment: a device presents a one-time token and its public key (`POST /v1/enroll`), or a
//! provisioning station does so for many devices at once (`POST /v1/enroll/batch`, each device with
//! its own token, checked and used exactly as alone, in one store transaction).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use halyard_protocol::DeviceId;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult};
use crate::app::App;
use crate::model::NewDevice;
use crate::mtls::MutualTls;
use crate::secrets::token_hash;
use crate::store::EnrollOutcome;

/// Most devices in one `POST /v1/enroll/batch`.
pub const MAX_ENROLL_BATCH: usize = 1000;

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

/// `POST /v1/enroll/batch` body.
#[derive(Debug, Deserialize)]
pub struct EnrollBatch {
    pub devices: Vec<EnrollRequest>,
}

/// One device's outcome in a batch: the answer `POST /v1/enroll` would give, or its error.
#[derive(Debug, Serialize)]
pub struct EnrollResult {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrolled: Option<EnrollResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn label_ok(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A request checked: the token's hash, the device to enroll and its TLS key, if any.
struct Checked {
    hash: String,
    device: NewDevice,
    tls_key: Option<Vec<u8>>,
    agent_version: Option<String>,
}

fn check(app: &App, req: EnrollRequest) -> ApiResult<Checked> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let tls_key = match &req.tls_key {
        Some(k) => Some(
            b64.decode(k.trim())
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
    let raw = b64
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
    Ok(Checked {
        hash: token_hash(req.token.trim()),
        device: NewDevice {
            id: DeviceId::from_public_key(&raw),
            public_key: hex::encode(raw),
            product: req.product,
            hardware_class: req.hardware_class,
        },
        tls_key,
        agent_version: req.agent_version,
    })
}

/// The answer for a stored outcome: credentials for an enrolled device, else its error.
async fn answer(app: &App, c: &Checked, outcome: EnrollOutcome) -> ApiResult<EnrollResponse> {
    let d = match outcome {
        EnrollOutcome::Enrolled(d) => d,
        EnrollOutcome::BadToken => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "enrollment token unknown, expired or already used",
            ));
        }
        EnrollOutcome::KeyConflict => {
            return Err(ApiError::conflict(format!(
                "device {} is already enrolled with other data",
                c.device.id
            )));
        }
    };
    tracing::info!(device = %d.id, hw = %d.hardware_class, site = ?d.site, agent = ?c.agent_version, "device enrolled");
    app.notify("device", d.id.as_str());
    let client_cert = client_cert(app, &d.id, c.tls_key.as_deref())?;
    let password = match app.settings.broker_credentials {
        true => {
            let password = crate::broker_auth::issue(app, &d.id)
                .await
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
            app.broker_changed.notify_one();
            Some(password)
        }
        false => None,
    };
    Ok(EnrollResponse {
        mqtt_username: password.as_ref().map(|_| d.id.to_string()),
        mqtt_password: password,
        server_ca: app.tls.as_ref().and_then(|t| t.ca_pem.clone()),
        client_cert,
        device_id: d.id,
        server_key: app.server_key_pem.clone(),
        broker: app.device_broker_url.clone(),
    })
}

pub async fn enroll(
    State(app): State<Arc<App>>,
    Json(req): Json<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    let c = check(&app, req)?;
    let (hash, now, to_store) = (c.hash.clone(), app.now(), c.device.clone());
    let outcome = app.db(move |s| s.enroll(&hash, &to_store, now)).await?;
    answer(&app, &c, outcome).await.map(Json)
}

/// `POST /v1/enroll/batch`: up to [`MAX_ENROLL_BATCH`] devices, each with its own token; one result
/// per device, in order, as `POST /v1/enroll` would answer it alone.
pub async fn enroll_batch(
    State(app): State<Arc<App>>,
    Json(req): Json<EnrollBatch>,
) -> ApiResult<Json<serde_json::Value>> {
    if !(1..=MAX_ENROLL_BATCH).contains(&req.devices.len()) {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1 to {MAX_ENROLL_BATCH} devices, not {}",
            req.devices.len()
        )));
    }
    let checked: Vec<ApiResult<Checked>> = req.devices.into_iter().map(|r| check(&app, r)).collect();
    let wanted: Vec<(String, NewDevice)> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().map(|c| (c.hash.clone(), c.device.clone())))
        .collect();
    let now = app.now();
    let mut outcomes = app.db(move |s| s.enroll_many(&wanted, now)).await?.into_iter();
    let mut results = Vec::with_capacity(checked.len());
    for c in checked {
        let done = match c {
            Ok(c) => match outcomes.next() {
                Some(outcome) => answer(&app, &c, outcome).await,
                None => Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the store answered fewer devices than asked",
                )),
            },
            Err(e) => Err(e),
        };
        results.push(match done {
            Ok(enrolled) => EnrollResult {
                status: StatusCode::OK.as_u16(),
                enrolled: Some(enrolled),
                error: None,
            },
            Err(e) => EnrollResult {
                status: e.status.as_u16(),
                enrolled: None,
                error: Some(e.message),
            },
        });
    }
    Ok(Json(serde_json::json!({ "results": results })))
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
