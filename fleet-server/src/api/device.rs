//! Device endpoints: the HTTPS fallback for devices that cannot reach MQTT (`GET desired`, `POST report|events|presence` with the same signed envelopes).

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use halyard_protocol::{DeviceId, Topic};

use super::{ApiError, ApiResult};
use crate::app::App;
use crate::ingest::{self, IngestError};
use crate::mtls::{MutualTls, Peer};

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
