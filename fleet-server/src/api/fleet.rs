//! Fleet inventory: summary counts, device queries by selector, labels, sites, metrics.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use halyard_protocol::DeviceId;
use serde::Deserialize;

use super::{ApiError, ApiResult, Caller};
use crate::app::App;
use crate::model::{Device, Role, Site};
use crate::selector::{Selector, active_version, state_name};

#[derive(Debug, Deserialize)]
pub struct DeviceQuery {
    #[serde(default)]
    selector: String,
}

pub async fn devices(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<DeviceQuery>,
) -> ApiResult<Json<Vec<Device>>> {
    Caller::require(&app, &headers, Role::Viewer).await?;
    let sel = Selector::parse(&q.selector).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let all = app.db(|s| s.devices()).await?;
    Ok(Json(all.into_iter().filter(|d| sel.matches(d)).collect()))
}

fn parse_id(id: &str) -> ApiResult<DeviceId> {
    DeviceId::new(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub async fn device(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    Caller::require(&app, &headers, Role::Viewer).await?;
    let id = parse_id(&id)?;
    let (device, events, desired) = app
        .db(move |s| Ok((s.device(&id)?, s.device_events(&id, 200)?, s.desired(&id)?)))
        .await?;
    let device = device.ok_or_else(|| ApiError::not_found("no such device"))?;
    Ok(Json(
        serde_json::json!({"device": device, "events": events, "desired": desired}),
    ))
}

#[derive(Debug, Deserialize)]
pub struct Labels {
    site: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

pub async fn label(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(l): Json<Labels>,
) -> ApiResult<Json<Device>> {
    let caller = Caller::require(&app, &headers, Role::Operator).await?;
    let id = parse_id(&id)?;
    let detail = format!("site={:?} tags={:?}", l.site, l.tags);
    let wanted = id.clone();
    let d = app
        .db(move |s| {
            s.set_device_labels(&wanted, l.site.as_deref(), &l.tags)?;
            s.device(&wanted)
        })
        .await?
        .ok_or_else(|| ApiError::not_found("no such device"))?;
    caller.audit(&app, "device.label", id.as_str(), detail).await?;
    Ok(Json(d))
}

pub async fn summary(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Json<serde_json::Value>> {
    Caller::require(&app, &headers, Role::Viewer).await?;
    let all = app.db(|s| s.devices()).await?;
    let by = |f: &dyn Fn(&Device) -> String| {
        let mut m = BTreeMap::<String, u64>::new();
        for d in &all {
            *m.entry(f(d)).or_default() += 1;
        }
        m
    };
    let by_version = by(&|d| active_version(d).unwrap_or_else(|| "unknown".into()));
    let by_state = by(&|d| state_name(d).to_owned());
    let by_site = by(&|d| d.site.clone().unwrap_or_else(|| "none".into()));
    let by_hw = by(&|d| d.hardware_class.clone());
    let rolled_back: Vec<_> = all
        .iter()
        .filter_map(|d| match d.report.as_ref().map(|r| &r.state) {
            Some(halyard_protocol::AgentState::RolledBack { version, reason }) => {
                Some(serde_json::json!({"device": d.id, "version": version, "reason": reason}))
            }
            _ => None,
        })
        .collect();
    Ok(Json(serde_json::json!({
        "devices": all.len(), "online": all.iter().filter(|d| d.online).count(),
        "by_version": by_version, "by_state": by_state, "by_site": by_site, "by_hardware_class": by_hw,
        "rolled_back": rolled_back,
    })))
}

pub async fn sites(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult<Json<Vec<Site>>> {
    Caller::require(&app, &headers, Role::Viewer).await?;
    Ok(Json(app.db(|s| s.sites()).await?))
}

pub async fn put_site(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(mut site): Json<Site>,
) -> ApiResult<Json<Site>> {
    let caller = Caller::require(&app, &headers, Role::Operator).await?;
    site.name = name;
    validate_site(&site)?;
    let stored = site.clone();
    app.db(move |s| s.put_site(&stored)).await?;
    caller
        .audit(
            &app,
            "site.put",
            &site.name,
            serde_json::to_string(&site).unwrap_or_default(),
        )
        .await?;
    app.wake.notify_one();
    Ok(Json(site))
}

fn validate_site(site: &Site) -> ApiResult<()> {
    for w in &site.windows {
        if let Some(bad) = w.days.iter().find(|d| crate::views::weekday(d).is_none()) {
            return Err(ApiError::bad_request(format!(
                "unknown weekday {bad:?} (mon..sun)"
            )));
        }
    }
    crate::views::site(site)
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

pub async fn delete_site(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let caller = Caller::require(&app, &headers, Role::Operator).await?;
    let n = name.clone();
    if !app.db(move |s| s.delete_site(&n)).await? {
        return Err(ApiError::not_found(format!("no site {name:?}")));
    }
    caller.audit(&app, "site.delete", &name, "").await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn metrics(State(app): State<Arc<App>>) -> ApiResult<String> {
    let ((devices, online), rollouts) = app.db(|s| Ok((s.device_counts()?, s.rollouts()?))).await?;
    let active = rollouts
        .iter()
        .filter(|r| crate::engine::is_active(&r.status))
        .count() as u64;
    Ok(app.metrics.render(&[
        ("halyard_devices", "Enrolled devices", devices),
        (
            "halyard_devices_online",
            "Devices whose last presence was online",
            online,
        ),
        (
            "halyard_rollouts_active",
            "Rollouts running, paused or reverting",
            active,
        ),
    ]))
}
