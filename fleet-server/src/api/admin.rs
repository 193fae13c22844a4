//! Tokens (operator API and enrollment), the audit log, and the Mosquitto files for the fleet's
//! per-device broker credentials.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{ApiError, ApiResult, Caller};
use crate::app::App;
use crate::model::{ApiToken, AuditEntry, EnrollToken, Role};
use crate::secrets::{new_token, token_hash, token_id};

fn secret_err(e: crate::secrets::SecretError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub async fn tokens(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Json<Vec<ApiToken>>> {
    Caller::require(&app, &headers, Role::Admin).await?;
    Ok(Json(app.db(|s| s.api_tokens()).await?))
}

#[derive(Debug, Deserialize)]
pub struct NewToken {
    name: String,
    role: Role,
}

pub async fn create_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let caller = Caller::require(&app, &headers, Role::Admin).await?;
    let secret = new_token("hly_").map_err(secret_err)?;
    let info = ApiToken {
        id: token_id(&secret),
        name: req.name,
        role: req.role,
        created_at: app.now(),
    };
    let (hash, stored) = (token_hash(&secret), info.clone());
    app.db(move |s| s.put_api_token(&hash, &stored)).await?;
    caller
        .audit(
            &app,
            "token.create",
            &info.id,
            format!("name={} role={}", info.name, info.role.as_str()),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"token": secret, "info": info})),
    ))
}

pub async fn revoke_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let caller = Caller::require(&app, &headers, Role::Admin).await?;
    let wanted = id.clone();
    if !app.db(move |s| s.revoke_api_token(&wanted)).await? {
        return Err(ApiError::not_found(format!("no token {id}")));
    }
    caller.audit(&app, "token.revoke", &id, "").await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn enroll_tokens(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<EnrollToken>>> {
    Caller::require(&app, &headers, Role::Operator).await?;
    Ok(Json(app.db(|s| s.enroll_tokens()).await?))
}

#[derive(Debug, Deserialize)]
pub struct NewEnrollToken {
    site: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    ttl_secs: Option<u64>,
}

/// Creates a one-time enrollment token (also used by the server at first start).
pub async fn make_enroll_token(
    app: &App,
    site: Option<String>,
    tags: Vec<String>,
    ttl_secs: Option<u64>,
) -> ApiResult<(String, EnrollToken)> {
    let mut made = make_enroll_tokens(app, site, tags, ttl_secs, 1).await?;
    made.pop()
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no token was made"))
}

/// Creates `count` one-time enrollment tokens alike, written in one trip to the store (a write per
/// token: a failure part way leaves tokens whose secrets nobody saw, which nothing can use).
async fn make_enroll_tokens(
    app: &App,
    site: Option<String>,
    tags: Vec<String>,
    ttl_secs: Option<u64>,
    count: usize,
) -> ApiResult<Vec<(String, EnrollToken)>> {
    let now = app.now();
    let mut made = Vec::with_capacity(count);
    for _ in 0..count {
        let secret = new_token("hly_enr_").map_err(secret_err)?;
        let info = EnrollToken {
            id: token_id(&secret),
            site: site.clone(),
            tags: tags.clone(),
            created_at: now,
            expires_at: ttl_secs.map(|t| now.saturating_add(t.min(i64::MAX as u64) as i64)),
            used_by: None,
        };
        made.push((secret, info));
    }
    let stored: Vec<(String, EnrollToken)> = made.iter().map(|(s, i)| (token_hash(s), i.clone())).collect();
    app.db(move |s| s.put_enroll_tokens(&stored)).await?;
    Ok(made)
}

/// Most tokens one batch request makes.
pub const MAX_TOKEN_BATCH: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct NewEnrollTokens {
    #[serde(flatten)]
    like: NewEnrollToken,
    count: usize,
}

/// `POST /api/v1/enroll-tokens/batch`: up to [`MAX_TOKEN_BATCH`] tokens alike, for a production line
/// or a simulated fleet; one audit entry names them all.
pub async fn create_enroll_tokens(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<NewEnrollTokens>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let caller = Caller::require(&app, &headers, Role::Operator).await?;
    if !(1..=MAX_TOKEN_BATCH).contains(&req.count) {
        return Err(ApiError::bad_request(format!(
            "count must be 1 to {MAX_TOKEN_BATCH}, not {}",
            req.count
        )));
    }
    let NewEnrollToken { site, tags, ttl_secs } = req.like;
    let made = make_enroll_tokens(&app, site, tags, ttl_secs, req.count).await?;
    let ids: Vec<&str> = made.iter().map(|(_, i)| i.id.as_str()).collect();
    let detail = format!(
        "count={} site={:?} tags={:?} ids={}",
        made.len(),
        made[0].1.site,
        made[0].1.tags,
        ids.join(",")
    );
    caller
        .audit(&app, "enroll_token.create_batch", ids[0], detail)
        .await?;
    let tokens: Vec<serde_json::Value> = made
        .into_iter()
        .map(|(token, info)| serde_json::json!({"token": token, "info": info}))
        .collect();
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "tokens": tokens }))))
}

pub async fn create_enroll_token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<NewEnrollToken>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let caller = Caller::require(&app, &headers, Role::Operator).await?;
    let (secret, info) = make_enroll_token(&app, req.site, req.tags, req.ttl_secs).await?;
    caller
        .audit(
            &app,
            "enroll_token.create",
            &info.id,
            format!("site={:?} tags={:?}", info.site, info.tags),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"token": secret, "info": info})),
    ))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    limit: Option<u32>,
}

pub async fn audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    Caller::require(&app, &headers, Role::Admin).await?;
    let limit = q.limit.unwrap_or(100).min(10_000);
    Ok(Json(app.db(move |s| s.audit_log(limit)).await?))
}

/// `GET /api/v1/broker/mosquitto`: Mosquitto's `password_file` (hashes only) and `acl_file` for every
/// enrolled device and the server's own account.
pub async fn mosquitto(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    Caller::require(&app, &headers, Role::Admin).await?;
    let config = crate::broker_auth::current(&app)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(serde_json::json!({
        "password_file": config.password_file,
        "acl_file": config.acl_file,
    })))
}
