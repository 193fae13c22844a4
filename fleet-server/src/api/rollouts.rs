//! Rollouts: create from a policy, list, show with decisions, and operator commands.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use halyard_rollout::{Command, Policy, RolloutSpec, RolloutState};
use serde::Deserialize;

use super::{ApiError, ApiResult, Caller};
use crate::app::App;
use crate::model::{Role, Rollout};
use crate::selector::Selector;

pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Json<Vec<Rollout>>> {
    Caller::require(&app, &headers, Role::Viewer).await?;
    Ok(Json(app.db(|s| s.rollouts()).await?))
}

pub async fn show(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Caller::require(&app, &headers, Role::Viewer).await?;
    let wanted = id.clone();
    let (r, decisions) = app
        .db(move |s| Ok((s.rollout(&wanted)?, s.decisions(&wanted)?)))
        .await?;
    let r = r.ok_or_else(|| ApiError::not_found(format!("no rollout {id}")))?;
    Ok(Json(serde_json::json!({"rollout": r, "decisions": decisions})))
}

/// `POST /api/v1/rollouts` body.
#[derive(Debug, Deserialize)]
pub struct CreateRollout {
    pub id: Option<String>,
    pub version: String,
    #[serde(default)]
    pub selector: String,
    pub seed: Option<u64>,
    pub policy: Policy,
    #[serde(default)]
    pub override_quarantine: bool,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

pub async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<CreateRollout>,
) -> ApiResult<(StatusCode, Json<Rollout>)> {
    let caller = Caller::require(&app, &headers, Role::Operator).await?;
    req.policy
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let selector = Selector::parse(&req.selector).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let _guard = app.engine_lock.lock().await;
    let (release, devices, quarantines, rollouts) = {
        let v = req.version.clone();
        app.db(move |s| Ok((s.release(&v)?, s.devices()?, s.quarantines()?, s.rollouts()?)))
            .await?
    };
    let release = release.ok_or_else(|| ApiError::not_found(format!("no release {}", req.version)))?;
    let targets: BTreeSet<_> = devices
        .iter()
        .filter(|d| selector.matches(d) && d.product == release.product)
        .map(|d| d.id.clone())
        .collect();
    let classes: BTreeSet<_> = devices
        .iter()
        .filter(|d| targets.contains(&d.id))
        .map(|d| d.hardware_class.clone())
        .collect();
    let barred: Vec<_> = quarantines
        .iter()
        .filter(|q| q.version == req.version && classes.contains(&q.hardware_class))
        .collect();
    if !barred.is_empty() && !req.override_quarantine {
        let list: Vec<_> = barred
            .iter()
            .map(|q| format!("{} ({})", q.hardware_class, q.reason))
            .collect();
        return Err(ApiError::conflict(format!(
            "release {} is quarantined for {}; pass override_quarantine to roll it out anyway",
            req.version,
            list.join(", ")
        )));
    }
    for other in rollouts.iter().filter(|r| crate::engine::is_active(&r.status)) {
        let sel = Selector::parse(&other.selector).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if devices.iter().any(|d| targets.contains(&d.id) && sel.matches(d)) {
            return Err(ApiError::conflict(format!(
                "rollout {} ({}) is still active on some of these devices; finish, abort or roll it back first",
                other.id, other.status
            )));
        }
    }
    let id = req
        .id
        .clone()
        .unwrap_or_else(|| format!("r{}", rollouts.len() + 1));
    if !valid_id(&id) {
        return Err(ApiError::bad_request(
            "rollout id must be 1-64 characters of [A-Za-z0-9._-]",
        ));
    }
    let now = app.now();
    let spec = RolloutSpec {
        id: id.clone(),
        version: req.version.clone(),
        seed: req.seed.unwrap_or(now as u64),
        policy: req.policy,
    };
    let rollout = Rollout {
        id: id.clone(),
        version: req.version.clone(),
        selector: req.selector.clone(),
        status: "running".into(),
        spec: to_value(&spec)?,
        state: to_value(&RolloutState::new())?,
        created_at: now,
        updated_at: now,
    };
    let stored = rollout.clone();
    app.db(move |s| s.put_rollout(&stored)).await?;
    drop(_guard);
    let detail = format!(
        "version={} selector={:?} targets={} override_quarantine={}",
        req.version,
        req.selector,
        targets.len(),
        req.override_quarantine && !barred.is_empty()
    );
    caller.audit(&app, "rollout.create", &id, detail).await?;
    app.wake.notify_one();
    app.notify("rollout", &id);
    Ok((StatusCode::CREATED, Json(rollout)))
}

fn to_value<T: serde::Serialize>(v: &T) -> ApiResult<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

pub async fn command(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, command)): Path<(String, String)>,
) -> ApiResult<Json<Rollout>> {
    let caller = Caller::require(&app, &headers, Role::Operator).await?;
    let cmd = match command.as_str() {
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "abort" => Command::Abort,
        "rollback" => Command::Rollback,
        _ => {
            return Err(ApiError::not_found(format!(
                "no rollout command {command:?} (pause, resume, abort, rollback)"
            )));
        }
    };
    let r = crate::engine::command(&app, &id, cmd, &caller.token.name).await?;
    caller
        .audit(
            &app,
            &format!("rollout.{command}"),
            &id,
            format!("status now {}", r.status),
        )
        .await?;
    app.wake.notify_one();
    Ok(Json(r))
}
