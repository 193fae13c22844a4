//! HTTP: device endpoints under `/v1` (enrollment, polling fallback, artifacts), the operator REST API
//! under `/api/v1` (bearer tokens with roles, every mutating call audited), `/metrics`, `/healthz`.
//! The contract is `docs/api.md`; the OpenAPI description is served at `/api/v1/openapi.json`.

mod admin;
mod artifacts;
mod auth;
mod device;
mod enroll;
mod events;
mod fleet;
mod releases;
mod rollouts;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};

use crate::app::App;
use crate::engine::EngineError;
use crate::store::StoreError;

pub use admin::make_enroll_token;
pub use auth::Caller;

/// An error answer: status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "request failed");
        }
        (self.status, Json(serde_json::json!({"error": self.message}))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::Conflict { .. } | StoreError::Fenced { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(s) => s.into(),
            EngineError::NotFound(_) => Self::not_found(e.to_string()),
            EngineError::Command(_) => Self::conflict(e.to_string()),
            EngineError::Selector(_) => Self::bad_request(e.to_string()),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The whole HTTP surface.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(fleet::metrics))
        .route("/v1/enroll", post(enroll::enroll))
        .route("/v1/enroll/batch", post(enroll::enroll_batch))
        .route("/v1/devices/{id}/desired", get(device::desired))
        .route("/v1/devices/{id}/{topic}", post(device::message))
        .route("/v1/artifacts/{sha256}", get(artifacts::get))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/fleet", get(fleet::summary))
        .route("/api/v1/devices", get(fleet::devices))
        .route("/api/v1/devices/{id}", get(fleet::device))
        .route("/api/v1/devices/{id}/labels", put(fleet::label))
        .route("/api/v1/sites", get(fleet::sites))
        .route(
            "/api/v1/sites/{name}",
            put(fleet::put_site).delete(fleet::delete_site),
        )
        .route("/api/v1/releases", get(releases::list).post(releases::upload))
        .route(
            "/api/v1/releases/{version}/quarantine",
            post(releases::quarantine),
        )
        .route(
            "/api/v1/releases/{version}/quarantine/{hw}",
            delete(releases::lift),
        )
        .route(
            "/api/v1/trust-root",
            get(releases::get_root).put(releases::put_root),
        )
        .route("/api/v1/rollouts", get(rollouts::list).post(rollouts::create))
        .route("/api/v1/rollouts/{id}", get(rollouts::show))
        .route("/api/v1/rollouts/{id}/events", get(events::rollout))
        .route("/api/v1/events", get(events::all))
        .route("/api/v1/rollouts/{id}/{command}", post(rollouts::command))
        .route("/api/v1/tokens", get(admin::tokens).post(admin::create_token))
        .route("/api/v1/tokens/{id}", delete(admin::revoke_token))
        .route(
            "/api/v1/enroll-tokens",
            get(admin::enroll_tokens).post(admin::create_enroll_token),
        )
        .route("/api/v1/enroll-tokens/batch", post(admin::create_enroll_tokens))
        .route("/api/v1/audit", get(admin::audit))
        .route("/api/v1/broker/mosquitto", get(admin::mosquitto))
        .merge(crate::dashboard::router())
        .layer(axum::middleware::from_fn_with_state(app.clone(), count_requests))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app)
}

async fn count_requests(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    app.metrics
        .http_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    next.run(req).await
}

const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
