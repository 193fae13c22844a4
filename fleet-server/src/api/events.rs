//! Live updates as Server-Sent Events: `GET /api/v1/events` (every change) and
//! `GET /api/v1/rollouts/{id}/events` (one rollout). Each event is `{"kind": "device" | "rollout" |
//! "release" | "delta", "id": ...}`; clients re-read what changed. A keep-alive comment every 15 s.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::{broadcast, watch};

use super::{ApiResult, Caller};
use crate::app::App;
use crate::model::Role;

fn stream(
    rx: broadcast::Receiver<String>,
    stopping: watch::Receiver<bool>,
    filter: Option<String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold(
        (rx, stopping, filter),
        |(mut rx, mut stopping, filter)| async move {
            loop {
                let received = tokio::select! {
                    r = rx.recv() => r,
                    _ = stopping.wait_for(|s| *s) => return None,
                };
                let event = match received {
                    Ok(msg) if filter.as_deref().is_none_or(|f| matches_rollout(&msg, f)) => {
                        Event::default().event("change").data(msg)
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => Event::default()
                        .event("lagged")
                        .data(serde_json::json!({"kind": "lagged", "missed": n}).to_string()),
                    Err(broadcast::error::RecvError::Closed) => return None,
                };
                return Some((Ok(event), (rx, stopping, filter)));
            }
        },
    )
}

fn matches_rollout(msg: &str, id: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(msg).is_ok_and(|v| v["kind"] == "rollout" && v["id"] == id)
}

pub async fn all(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    Caller::require(&app, &headers, Role::Viewer).await?;
    Ok(
        Sse::new(stream(app.updates.subscribe(), app.stopping.clone(), None))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}

pub async fn rollout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    Caller::require(&app, &headers, Role::Viewer).await?;
    let wanted = id.clone();
    if app.db(move |s| s.rollout(&wanted)).await?.is_none() {
        return Err(super::ApiError::not_found(format!("no rollout {id}")));
    }
    Ok(
        Sse::new(stream(app.updates.subscribe(), app.stopping.clone(), Some(id)))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}
