//! Releases (upload, list, quarantine) and the fleet's trust root.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt as _;
use serde::Deserialize;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use super::{ApiError, ApiResult, Caller};
use crate::app::App;
use crate::model::{Quarantine, Release, Role};
use crate::releases::{self, ReleaseError};

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl From<ReleaseError> for ApiError {
    fn from(e: ReleaseError) -> Self {
        let status = match &e {
            ReleaseError::NoTrustRoot => StatusCode::PRECONDITION_FAILED,
            ReleaseError::Rejected { .. } | ReleaseError::NoFullPayload | ReleaseError::Root(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ReleaseError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ReleaseError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

pub async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    Caller::require(&app, &headers, Role::Viewer).await?;
    let (rels, qs) = app.db(|s| Ok((s.releases()?, s.quarantines()?))).await?;
    Ok(Json(
        rels.into_iter()
            .map(|r| {
                let q: Vec<_> = qs.iter().filter(|q| q.version == r.version).collect();
                serde_json::json!({"release": r, "quarantines": q})
            })
            .collect(),
    ))
}

/// Streams the body into `dir` under a temporary name, hashing it; returns (path, sha256, size).
async fn receive(app: &App, body: Body) -> ApiResult<(std::path::PathBuf, String, u64)> {
    let max = app.settings.max_bundle_bytes;
    let tmp = app.artifacts_dir.join(format!(
        ".upload-{}",
        crate::secrets::new_token("").map_err(internal)?
    ));
    let mut file = tokio::fs::File::create(&tmp).await.map_err(internal)?;
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    let result: ApiResult<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes =
                chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
            size += chunk.len() as u64;
            if size > max {
                return Err(ReleaseError::TooLarge { max }.into());
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(internal)?;
        }
        file.sync_all().await.map_err(internal)
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    Ok((tmp, hex::encode(hasher.finalize()), size))
}

pub async fn upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Release>)> {
    let caller = Caller::require(&app, &headers, Role::Operator).await?;
    let root = app
        .trust
        .read()
        .map_err(internal)?
        .clone()
        .ok_or(ReleaseError::NoTrustRoot)?;
    let (tmp, sha, size) = receive(&app, body).await?;
    let (path, now, sha2) = (tmp.clone(), app.now(), sha.clone());
    let verified =
        tokio::task::spawn_blocking(move || releases::verify_bundle(&path, &root, &sha2, size, now))
            .await
            .map_err(internal)?;
    let release = match verified {
        Ok(r) => r,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
    };
    tokio::fs::rename(&tmp, app.artifacts_dir.join(&sha))
        .await
        .map_err(internal)?;
    let stored = release.clone();
    app.db(move |s| s.put_release(&stored)).await?;
    caller
        .audit(
            &app,
            "release.upload",
            &release.version,
            format!("bundle sha256 {sha}, {size} bytes"),
        )
        .await?;
    crate::deltas::schedule(&app, &release.version);
    app.notify("release", &release.version);
    Ok((StatusCode::CREATED, Json(release)))
}

#[derive(Debug, Deserialize)]
pub struct QuarantineRequest {
    hardware_class: String,
    reason: String,
}

pub async fn quarantine(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(version): Path<String>,
    Json(req): Json<QuarantineRequest>,
) -> ApiResult<(StatusCode, Json<Quarantine>)> {
    let caller = Caller::require(&app, &headers, Role::Operator).await?;
    let q = Quarantine {
        version: version.clone(),
        hardware_class: req.hardware_class,
        reason: req.reason,
        at: app.now(),
    };
    let (stored, v) = (q.clone(), version.clone());
    app.db(move |s| {
        s.release(&v)?.ok_or(crate::store::StoreError::NotFound {
            what: "release",
            key: v.clone(),
        })?;
        s.put_quarantine(&stored)
    })
    .await?;
    caller
        .audit(
            &app,
            "release.quarantine",
            &version,
            format!("hw={} reason={}", q.hardware_class, q.reason),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(q)))
}

pub async fn lift(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((version, hw)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let caller = Caller::require(&app, &headers, Role::Admin).await?;
    let (v, h) = (version.clone(), hw.clone());
    if !app.db(move |s| s.lift_quarantine(&v, &h)).await? {
        return Err(ApiError::not_found(format!(
            "{version} is not quarantined for {hw}"
        )));
    }
    caller
        .audit(&app, "release.unquarantine", &version, format!("hw={hw}"))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_root(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> ApiResult<axum::response::Response> {
    Caller::require(&app, &headers, Role::Viewer).await?;
    let path = releases::root_path(&app.settings.data_dir);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ReleaseError::NoTrustRoot)?;
    Ok(axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )))
}

pub async fn put_root(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let caller = Caller::require(&app, &headers, Role::Admin).await?;
    let current = app.trust.read().map_err(internal)?.clone();
    let (dir, now) = (app.settings.data_dir.clone(), app.now());
    let root =
        tokio::task::spawn_blocking(move || releases::install_root(&dir, current.as_ref(), &body, now))
            .await
            .map_err(internal)??;
    let version = root.signed().version;
    *app.trust.write().map_err(internal)? = Some(root);
    caller
        .audit(&app, "trust_root.put", "root.json", format!("version {version}"))
        .await?;
    Ok(Json(serde_json::json!({"version": version})))
}
