//! Operator commands: one `match (command, status)`; everything else is a typed error.

use std::borrow::Borrow;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::device::DeviceView;
use crate::engine::Ctx;
use crate::output::{DecisionKind, Step};
use crate::policy::RolloutSpec;
use crate::state::{RolloutState, Status};
use crate::windows::Site;

/// What an operator can ask of a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Stop issuing installs (Running → Paused).
    Pause,
    /// Continue (Paused → Running); failures seen so far are forgiven (added to the budgets).
    Resume,
    /// Stop for good; Cancel devices that have not switched slots (Running/Paused/Reverting → Aborted).
    Abort,
    /// Revert every touched device and quarantine the failed classes
    /// (Running/Paused/Completed/Aborted → Reverting).
    Rollback,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Abort => "abort",
            Command::Rollback => "rollback",
        })
    }
}

/// A command the rollout's status does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// E.g. resume a completed rollout, pause a paused one.
    #[error("cannot {command} rollout {rollout}: it is {status}")]
    NotAllowed {
        /// Rollout id.
        rollout: String,
        /// The refused command.
        command: Command,
        /// The rollout's status name.
        status: &'static str,
    },
}

/// Applies an operator command. `devices` and `sites` are the same as for [`crate::step`]
/// (needed to tell which devices get `Revert` and which `Cancel`). The actor is recorded in the
/// decision. Apply the returned step exactly like a `step` result.
pub fn command<V: Borrow<DeviceView>>(
    spec: &RolloutSpec,
    state: &RolloutState,
    cmd: Command,
    actor: &str,
    devices: &[V],
    sites: &[Site],
    now: Timestamp,
) -> Result<Step, CommandError> {
    let devices: Vec<&DeviceView> = devices.iter().map(Borrow::borrow).collect();
    let mut cx = Ctx::new(spec, state, &devices, sites, now);
    let by = format!("{cmd} by {actor}");
    match (cmd, &state.status) {
        (Command::Pause, Status::Running) => {
            cx.state.status = Status::Paused { reason: by.clone() };
            cx.decide(None, DecisionKind::Paused, by);
        }
        (Command::Resume, Status::Paused { reason }) => {
            let message = format!("{by} (was paused: {reason})");
            cx.resume();
            cx.decide(None, DecisionKind::Resumed, message);
        }
        (Command::Abort, Status::Running | Status::Paused { .. } | Status::Reverting { .. }) => {
            cx.abort(by);
        }
        (
            Command::Rollback,
            Status::Running | Status::Paused { .. } | Status::Completed | Status::Aborted { .. },
        ) => {
            cx.observe();
            cx.begin_revert(by);
        }
        (cmd, status) => {
            return Err(CommandError::NotAllowed {
                rollout: spec.id.clone(),
                command: cmd,
                status: status.name(),
            });
        }
    }
    Ok(cx.finish())
}

impl Ctx<'_> {
    /// Back to Running. Failures beyond each wave's budget so far are forgiven: the budget stays
    /// used up, so the next failure in a breached wave pauses (or reverts) again.
    fn resume(&mut self) {
        self.state.status = Status::Running;
        for index in 0..self.state.waves.len() {
            let failed = self.state.failures_in(index).count();
            let budget = self.spec.policy.waves.get(index).map(|w| w.failure_budget);
            let Some(wave) = self.state.waves.get_mut(index) else {
                continue;
            };
            let base = budget.map_or(0, |b| b.tolerated(wave.devices.len()));
            wave.forgiven = wave.forgiven.max(failed.saturating_sub(base));
        }
    }
}
