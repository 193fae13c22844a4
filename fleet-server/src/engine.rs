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
use crate::desired::{self, Context, FleetView};
use crate::model::{Decision, Quarantine, Rollout};
use crate::selector::{Selector, SelectorError};
use crate::store::{Fence, StepCommit, StoreError};

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
    let mut view = app.engine_lock.lock().await;
    if view.epoch != Some(epoch) {
        // A new term: nothing this replica remembers from an earlier one is trusted.
        *view = FleetView::for_term(epoch);
    }
    let out = pass(app, &mut view, epoch).await;
    if out.is_err() {
        // Whatever went wrong, the next pass starts from the store alone.
        *view = FleetView::for_term(epoch);
    }
    out
}

async fn pass(app: &App, view: &mut FleetView, epoch: u64) -> Result<(), EngineError> {
    let revs = app.db(|s| s.rollout_revs()).await?;
    let active: Vec<_> = revs.into_iter().filter(|r| is_active(&r.status)).collect();
    if active.is_empty() {
        return Ok(());
    }
    let mut ctx = Context::load(app, view).await?;
    let now = app.now();
    for head in active {
        if view.is_quiet(&head.id, head.rev, now) {
            // Nothing changed since a step that changed nothing, and nothing is due yet.
            continue;
        }
        let loaded = match view.rollouts.remove(&head.id) {
            Some(l) if l.rev == head.rev => l,
            _ => match read(app, &head.id).await? {
                Some(l) => l,
                None => continue,
            },
        };
        // Changed or not, the next pass reuses what this one holds as long as nobody else writes
        // the row (its revision tells).
        let kept = match advance(app, &loaded, &mut ctx, Trigger::Tick { epoch }).await? {
            Advanced::Stored(l) => *l,
            Advanced::Unchanged { quiet_until } => {
                let quiet = desired::Quiet {
                    rev: loaded.rev,
                    until: quiet_until.map(|t| t.as_second()),
                };
                view.quiet.insert(head.id.clone(), quiet);
                loaded
            }
        };
        view.rollouts.insert(head.id, kept);
    }
    ctx.keep(view);
    Ok(())
}

/// A rollout as the engine read it, spec and state parsed; kept in the [`FleetView`] while its row's
/// revision stays the same, so an idle pass neither reads nor parses a state as large as the fleet.
#[derive(Debug)]
pub struct Loaded {
    rev: i64,
    rollout: Rollout,
    spec: RolloutSpec,
    state: RolloutState,
}

async fn read(app: &App, id: &str) -> Result<Option<Loaded>, EngineError> {
    let wanted = id.to_owned();
    let Some((rollout, rev)) = app.db(move |s| s.rollout_with_rev(&wanted)).await? else {
        return Ok(None);
    };
    Ok(Some(Loaded {
        rev,
        spec: parse(&rollout, "spec", &rollout.spec)?,
        state: parse(&rollout, "state", &rollout.state)?,
        rollout,
    }))
}

/// Applies an operator command to a rollout (under the engine lock) and returns the stored result.
pub async fn command(app: &App, id: &str, cmd: Command, actor: &str) -> Result<Rollout, EngineError> {
    let mut view = app.engine_lock.lock().await;
    // Another replica may have written the rollout or issued desired states since this one looked.
    view.rollouts.remove(id);
    view.forget_seqs();
    let loaded = read(app, id)
        .await?
        .ok_or_else(|| EngineError::NotFound(id.to_owned()))?;
    let mut ctx = match Context::load(app, &mut view).await {
        Ok(ctx) => ctx,
        Err(e) => {
            *view = FleetView::default();
            return Err(e.into());
        }
    };
    if let Err(e) = advance(app, &loaded, &mut ctx, Trigger::Command(cmd, actor)).await {
        *view = FleetView::default();
        return Err(e);
    }
    ctx.keep(&mut view);
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
    T::deserialize(v).map_err(|e| EngineError::Corrupt {
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

/// What stepping a rollout did.
enum Advanced {
    /// It stored a change; the rollout as stored now.
    Stored(Box<Loaded>),
    /// Nothing to store; with the same inputs nothing changes before this
    /// ([`halyard_rollout::quiet_until`]).
    Unchanged { quiet_until: Option<Timestamp> },
}

/// Steps or commands one rollout.
async fn advance(
    app: &App,
    l: &Loaded,
    ctx: &mut Context,
    how: Trigger<'_>,
) -> Result<Advanced, EngineError> {
    let r = &l.rollout;
    let selector = Selector::parse(&r.selector)?;
    let product = ctx.releases.get(&r.version).map(|rel| rel.product.clone());
    let device_views: Vec<&halyard_rollout::DeviceView> = ctx
        .devices
        .values()
        .filter(|d| selector.matches(d) && product.as_deref().is_none_or(|p| p == d.product))
        .filter_map(|d| ctx.views.get(&d.id))
        .collect();
    let now = Timestamp::from_second(app.now()).unwrap_or(Timestamp::UNIX_EPOCH);
    let (step, epoch) = match how {
        Trigger::Tick { epoch } => (
            halyard_rollout::step(&l.spec, &l.state, &device_views, &ctx.sites, now),
            Some(epoch),
        ),
        Trigger::Command(c, actor) => (
            halyard_rollout::command(&l.spec, &l.state, c, actor, &device_views, &ctx.sites, now)?,
            None,
        ),
    };
    if step.actions.is_empty() && step.decisions.is_empty() && step.state == l.state {
        let quiet_until = halyard_rollout::quiet_until(&l.spec, &l.state, &device_views, now);
        return Ok(Advanced::Unchanged { quiet_until });
    }
    drop(device_views);
    let new_state = serde_json::to_value(&step.state).map_err(|e| EngineError::Seal(e.to_string()))?;
    let mut commit = build_commit(app, r, &step, new_state, ctx)?;
    commit.fence = Fence {
        epoch,
        prior_rev: Some(l.rev),
    };
    let now_s = app.now();
    let id = r.id.clone();
    // The commit goes to the store task and comes back: a state as large as the fleet is not cloned.
    let (rev, commit) = app
        .db(move |s| s.commit_step(&id, &commit, now_s).map(|rev| (rev, commit)))
        .await?;
    publish(app, &commit).await;
    record(app, r, &step, &commit);
    let rollout = Rollout {
        status: commit.status,
        state: commit.state,
        updated_at: now_s,
        ..r.clone()
    };
    Ok(Advanced::Stored(Box::new(Loaded {
        rev,
        rollout,
        spec: l.spec.clone(),
        state: step.state,
    })))
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
