//! Drives the pure rollout engine (`halyard-rollout`): loads a rollout and the devices its selector
//! names, calls `step` (on every tick and wake-up) or `command` (operator), and stores the returned
//! state, decisions, desired envelopes and quarantines in ONE store transaction before publishing the
//! envelopes. A crash between commit and publish is healed by the republish on (re)connect.
//!
//! Only the replica holding the engine lease steps rollouts (`crate::leader`); each commit is fenced
//! by the lease epoch and by the rollout state it was computed from. Operator commands run on any
//! replica, fenced by the state alone.

use std::collections::HashMap;
use std::sync::Arc;

use halyard_protocol::DeviceId;
use halyard_rollout::{Command, CommandError, RolloutSpec, RolloutState, Status, Step};
use jiff::Timestamp;
use tokio::sync::watch;

use crate::app::{App, Outgoing};
use crate::desired::{self, Context};
use crate::model::{Decision, Quarantine, Rollout};
use crate::selector::{Selector, SelectorError};
use crate::store::{Fence, StepCommit, StoreError};
use crate::views;

/// A rollout could not be advanced.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rollout {id}: stored {what} is unreadable: {reason}")]
    Corrupt {
        id: String,
        what: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("rollout {0} not found")]
    NotFound(String),
    #[error("signing desired state: {0}")]
    Seal(String),
}

/// Runs the engine until `shutdown`: every `tick`, and whenever something wakes it.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(app.settings.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = app.wake.notified() => {}
            // Report wake-ups are coalesced to at most one pass per tick, so a fleet reporting
            // hundreds of times a second does not rescan the store back to back.
            _ = app.reports.notified() => tokio::time::sleep_until(last + app.settings.tick).await,
            _ = shutdown.changed() => return,
        }
        last = tokio::time::Instant::now();
        if let Err(e) = tick(&app).await {
            tracing::error!(error = %e, "rollout engine step failed; retrying next tick");
        }
    }
}

/// Whether the engine still has work to do for a rollout in this status.
pub fn is_active(status: &str) -> bool {
    matches!(status, "running" | "paused" | "reverting")
}

/// One pass over every active rollout, if this replica leads the engine.
pub async fn tick(app: &App) -> Result<(), EngineError> {
    let Some(epoch) = app.leader.epoch() else {
        return Ok(());
    };
    let _guard = app.engine_lock.lock().await;
    let rollouts = app.db(|s| s.rollouts()).await?;
    if !rollouts.iter().any(|r| is_active(&r.status)) {
        return Ok(());
    }
    let mut ctx = Context::load(app).await?;
    for r in rollouts.iter().filter(|r| is_active(&r.status)) {
        advance(app, r, &mut ctx, Trigger::Tick { epoch }).await?;
    }
    Ok(())
}

/// Applies an operator command to a rollout (under the engine lock) and returns the stored result.
pub async fn command(app: &App, id: &str, cmd: Command, actor: &str) -> Result<Rollout, EngineError> {
    let _guard = app.engine_lock.lock().await;
    let wanted = id.to_owned();
    let r = app
        .db(move |s| s.rollout(&wanted))
        .await?
        .ok_or_else(|| EngineError::NotFound(id.to_owned()))?;
    let mut ctx = Context::load(app).await?;
    advance(app, &r, &mut ctx, Trigger::Command(cmd, actor)).await?;
    let wanted = id.to_owned();
    app.db(move |s| s.rollout(&wanted))
        .await?
        .ok_or_else(|| EngineError::NotFound(id.to_owned()))
}

fn parse<T: serde::de::DeserializeOwned>(
    r: &Rollout,
    what: &'static str,
    v: &serde_json::Value,
) -> Result<T, EngineError> {
    serde_json::from_value(v.clone()).map_err(|e| EngineError::Corrupt {
        id: r.id.clone(),
        what,
        reason: e.to_string(),
    })
}

/// What moves a rollout: the leader's periodic step, or an operator's command.
enum Trigger<'a> {
    Tick { epoch: u64 },
    Command(Command, &'a str),
}

async fn advance(app: &App, r: &Rollout, ctx: &mut Context, how: Trigger<'_>) -> Result<(), EngineError> {
    let spec: RolloutSpec = parse(r, "spec", &r.spec)?;
    let state: RolloutState = parse(r, "state", &r.state)?;
    let selector = Selector::parse(&r.selector)?;
    let product = ctx.releases.get(&r.version).map(|rel| rel.product.clone());
    let targets: Vec<_> = ctx
        .devices
        .values()
        .filter(|d| selector.matches(d) && product.as_deref().is_none_or(|p| p == d.product))
        .collect();
    let device_views: Vec<_> = targets.iter().map(|d| views::device(d)).collect();
    let now = Timestamp::from_second(app.now()).unwrap_or(Timestamp::UNIX_EPOCH);
    let (step, epoch) = match how {
        Trigger::Tick { epoch } => (
            halyard_rollout::step(&spec, &state, &device_views, &ctx.sites, now),
            Some(epoch),
        ),
        Trigger::Command(c, actor) => (
            halyard_rollout::command(&spec, &state, c, actor, &device_views, &ctx.sites, now)?,
            None,
        ),
    };
    let new_state = serde_json::to_value(&step.state).map_err(|e| EngineError::Seal(e.to_string()))?;
    if step.actions.is_empty() && step.decisions.is_empty() && new_state == r.state {
        return Ok(());
    }
    let mut commit = build_commit(app, r, &step, new_state, ctx)?;
    commit.fence = Fence {
        epoch,
        prior_state: Some(r.state.clone()),
    };
    let now_s = app.now();
    let (id, to_store) = (r.id.clone(), commit.clone());
    app.db(move |s| s.commit_step(&id, &to_store, now_s)).await?;
    publish(app, &commit).await;
    record(app, r, &step, &commit);
    Ok(())
}

fn build_commit(
    app: &App,
    r: &Rollout,
    step: &Step,
    state: serde_json::Value,
    ctx: &mut Context,
) -> Result<StepCommit, EngineError> {
    let mut out = StepCommit {
        status: step.state.status.name().to_owned(),
        state,
        ..StepCommit::default()
    };
    for action in &step.actions {
        match desired::for_action(app, ctx, &r.id, action)? {
            desired::Effect::Desired(d) => out.desired.push(d),
            desired::Effect::Quarantine {
                version,
                hw_class,
                reason,
            } => out.quarantines.push(Quarantine {
                version,
                hardware_class: hw_class,
                reason,
                at: app.now(),
            }),
            desired::Effect::Nothing => {}
        }
    }
    out.decisions = step.decisions.iter().map(|d| decision(&r.id, d)).collect();
    Ok(out)
}

fn decision(rollout: &str, d: &halyard_rollout::Decision) -> Decision {
    let kind = serde_json::to_value(d.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let message = match d.wave {
        Some(w) if !d.message.starts_with("wave") => format!("wave {w}: {}", d.message),
        _ => d.message.clone(),
    };
    Decision {
        rollout: rollout.to_owned(),
        at: d.at.as_second(),
        kind,
        message,
    }
}

async fn publish(app: &App, commit: &StepCommit) {
    for d in &commit.desired {
        let msg = Outgoing {
            topic: halyard_protocol::Topic::Desired.for_device(&d.device),
            payload: d.envelope.clone().into_bytes(),
        };
        if app.outgoing.send(msg).await.is_err() {
            tracing::warn!(device = %d.device, "MQTT publisher gone; desired state stays stored for the next connect");
        }
    }
}

fn record(app: &App, r: &Rollout, step: &Step, commit: &StepCommit) {
    use std::sync::atomic::Ordering::Relaxed;
    app.metrics.engine_steps.fetch_add(1, Relaxed);
    app.metrics
        .decisions
        .fetch_add(commit.decisions.len() as u64, Relaxed);
    for d in &commit.decisions {
        tracing::info!(rollout = %r.id, kind = %d.kind, "{}", d.message);
    }
    if matches!(
        step.state.status,
        Status::Completed | Status::Reverted { .. } | Status::Aborted { .. }
    ) {
        tracing::info!(rollout = %r.id, status = step.state.status.name(), "rollout finished");
    }
    app.notify("rollout", &r.id);
}

/// Devices by id, for the context.
pub type DeviceMap = HashMap<DeviceId, crate::model::Device>;
