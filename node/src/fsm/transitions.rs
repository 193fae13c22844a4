//! The transition function: one `match (state, event)` per state, whose catch-all returns
//! [`InvalidTransition`], and [`wakeup`], the timer event a state is waiting for at `now`.

use halyard_protocol::{Artifact, DeltaOffer, DesiredAction, Sha256, Slot, Window};

use super::{
    Action, Event, Image, InvalidTransition, PayloadChoice, Policy, Running, Staging, State, Update,
};

/// What a transition returns.
pub type Step = Result<(State, Vec<Action>), InvalidTransition>;

/// [`next_with`] under the default [`Policy`].
pub fn next(state: &State, event: &Event, now: u64) -> Step {
    next_with(&Policy::default(), state, event, now)
}

/// The state machine: the new state and the actions to perform, in order, or [`InvalidTransition`].
pub fn next_with(policy: &Policy, state: &State, event: &Event, now: u64) -> Step {
    let step = match (state, event) {
        (
            _,
            Event::Desired {
                rollout,
                action,
                running,
            },
        ) => on_desired(state, rollout, action, running),
        (State::Downloading { .. }, _) => downloading(state, event),
        (State::Installing { .. }, _) => installing(state, event),
        (State::Staged(staging), _) => staged(policy, state, staging, event),
        (State::Rebooting { staging, armed }, _) => rebooting(policy, state, staging, *armed, event, now),
        (State::Trial { staging, boots, .. }, _) => trial(policy, state, staging, *boots, event, now),
        (State::Committed { .. } | State::RolledBack { .. } | State::Failed { .. } | State::Idle, _) => {
            settled(state, event)
        }
    };
    step.ok_or_else(|| invalid(state, event))
}

/// The timer event `state` is waiting for at `now`, if it is due.
pub fn wakeup(state: &State, now: u64) -> Option<Event> {
    let deadline_passed = |u: &Update| u.deadline.is_some_and(|d| now > d);
    let in_window = |w: &Option<Window>| w.is_none_or(|w| (w.not_before..=w.not_after).contains(&now));
    match state {
        State::Downloading { update, .. } | State::Installing { update, .. } if deadline_passed(update) => {
            Some(Event::JobDeadline)
        }
        State::Staged(s) if deadline_passed(&s.update) => Some(Event::JobDeadline),
        State::Staged(s) if in_window(&s.update.window) => Some(Event::WindowOpen),
        State::Trial { deadline, .. } if now >= *deadline => Some(Event::TrialDeadline),
        _ => None,
    }
}

fn invalid(state: &State, event: &Event) -> InvalidTransition {
    InvalidTransition {
        state: state.name(),
        event: event.name(),
    }
}

type Outcome = Option<(State, Vec<Action>)>;

/// A durable change: journal first, then `effects`, with the event (if the wire state changed) and the
/// report after the effects but before a reboot (nothing runs after a reboot).
fn go(from: &State, to: State, mut effects: Vec<Action>, reason: Option<String>) -> Outcome {
    let mut actions = vec![Action::Journal(to.clone())];
    let reboot = effects.last() == Some(&Action::Reboot);
    if reboot {
        effects.pop();
    }
    actions.extend(effects);
    let (before, after) = (from.wire(), to.wire());
    if before != after {
        actions.push(Action::Emit {
            from: before,
            to: after,
            reason,
        });
        actions.push(Action::Report);
    }
    if reboot {
        actions.push(Action::Reboot);
    }
    Some((to, actions))
}

/// No durable change; `effects` re-assert what the state implies (after a restart).
fn stay(state: &State, effects: Vec<Action>) -> Outcome {
    Some((state.clone(), effects))
}

fn on_desired(state: &State, rollout: &Option<String>, action: &DesiredAction, running: &Running) -> Outcome {
    let busy = !matches!(state, State::Downloading { .. } | State::Staged(_)) && !state.is_settled();
    match action {
        _ if busy => None,
        DesiredAction::Stay => match state {
            State::Downloading { .. } => go(
                state,
                State::Idle,
                vec![Action::DiscardDownload],
                Some("cancelled by the server".into()),
            ),
            _ => stay(state, vec![]),
        },
        DesiredAction::Install {
            version,
            bundle,
            deltas,
            window,
            deadline,
        } => {
            if let State::Staged(s) = state
                && s.update.version == *version
                && (s.update.window, s.update.deadline, &s.update.rollout) != (*window, *deadline, rollout)
            {
                // The server moved the job (its window passed before the reboot): wait for the new one.
                let mut staging = s.clone();
                (
                    staging.update.window,
                    staging.update.deadline,
                    staging.update.rollout,
                ) = (*window, *deadline, rollout.clone());
                return go(state, State::Staged(staging), vec![], None);
            }
            if already_handled(state, rollout, version, running) {
                return stay(state, vec![]);
            }
            let update = Update {
                rollout: rollout.clone(),
                version: version.clone(),
                slot: running.slot.other(),
                window: *window,
                deadline: *deadline,
            };
            start_download(state, update, bundle, deltas, running)
        }
        DesiredAction::Switch {
            version,
            image_sha256,
        } if state.is_settled() => switch(state, rollout, version, *image_sha256, running),
        DesiredAction::Switch { .. } => None,
    }
}

/// The desired release is already running, being fetched or staged, or already failed in this rollout.
fn already_handled(state: &State, rollout: &Option<String>, version: &str, running: &Running) -> bool {
    let running_it = running.image.as_ref().is_some_and(|i| i.version == version);
    let same = |v: &str, r: &Option<String>| v == version && r == rollout;
    running_it
        || match state {
            State::Downloading { update, .. } => update.version == version,
            State::Staged(s) => s.update.version == version,
            State::RolledBack {
                version: v,
                rollout: r,
                ..
            } => same(v, r),
            State::Failed {
                version: Some(v),
                rollout: r,
                ..
            } => same(v, r),
            _ => false,
        }
}

fn start_download(
    state: &State,
    update: Update,
    bundle: &Artifact,
    deltas: &[DeltaOffer],
    running: &Running,
) -> Outcome {
    let active = running.image.as_ref().map(|i| i.sha256);
    match deltas.iter().find(|d| Some(d.source_sha256) == active) {
        Some(offer) => {
            let delta = (offer.artifact.clone(), PayloadChoice::Delta);
            fetch(state, update, delta, Some(bundle.clone()), None)
        }
        None => fetch(state, update, (bundle.clone(), PayloadChoice::Full), None, None),
    }
}

/// Start fetching `artifact` from byte 0 (a delta keeps the full bundle as `fallback`).
fn fetch(
    state: &State,
    update: Update,
    (artifact, choice): (Artifact, PayloadChoice),
    fallback: Option<Artifact>,
    reason: Option<String>,
) -> Outcome {
    let effects = vec![
        Action::DiscardDownload,
        Action::Download {
            artifact: artifact.clone(),
            from: 0,
        },
    ];
    let to = State::Downloading {
        update,
        artifact,
        choice,
        fallback,
        done: 0,
    };
    go(state, to, effects, reason)
}

/// A delta failed: fetch the full bundle instead, or fail when there is none to fall back to.
fn delta_failed(state: &State, update: &Update, fallback: &Option<Artifact>, reason: &str) -> Outcome {
    match fallback {
        Some(full) => {
            let why = format!("delta failed ({reason}); falling back to the full bundle");
            fetch(
                state,
                update.clone(),
                (full.clone(), PayloadChoice::Full),
                None,
                Some(why),
            )
        }
        None => failed(state, update, reason.to_owned(), vec![Action::DiscardDownload]),
    }
}

fn switch(
    state: &State,
    rollout: &Option<String>,
    version: &str,
    sha256: Sha256,
    running: &Running,
) -> Outcome {
    let wanted = |i: &Image| i.version == version && i.sha256 == sha256;
    if running.image.as_ref().is_some_and(wanted) {
        return stay(state, vec![]);
    }
    let Some(image) = running.other.as_ref().filter(|i| wanted(i)) else {
        let reason = format!(
            "switch: slot {:?} does not hold {version} ({sha256})",
            running.slot.other()
        );
        let to = State::Failed {
            version: Some(version.to_owned()),
            rollout: rollout.clone(),
            reason: reason.clone(),
        };
        return go(state, to, vec![], Some(reason));
    };
    let update = Update {
        rollout: rollout.clone(),
        version: version.to_owned(),
        slot: running.slot.other(),
        window: None,
        deadline: None,
    };
    let staging = Staging {
        update,
        image: image.clone(),
        security_version: 0,
        attempts: 0,
    };
    go(state, State::Staged(staging), vec![], None)
}

fn failed(state: &State, update: &Update, reason: String, effects: Vec<Action>) -> Outcome {
    let to = State::Failed {
        version: Some(update.version.clone()),
        rollout: update.rollout.clone(),
        reason: reason.clone(),
    };
    go(state, to, effects, Some(reason))
}

fn downloading(state: &State, event: &Event) -> Outcome {
    let State::Downloading {
        update,
        artifact,
        choice,
        fallback,
        done,
    } = state
    else {
        return None;
    };
    match event {
        // Progress only moves forward; a repeated or older offset changes nothing.
        Event::DownloadProgress { done: now_done } if now_done <= done => stay(state, vec![]),
        Event::DownloadProgress { done: now_done } => {
            let mut to = state.clone();
            if let State::Downloading { done, .. } = &mut to {
                *done = *now_done;
            }
            Some((to.clone(), vec![Action::Journal(to)]))
        }
        Event::DownloadDone => {
            let to = State::Installing {
                update: update.clone(),
                artifact: artifact.clone(),
                choice: *choice,
                fallback: fallback.clone(),
            };
            let effects = vec![Action::MarkUnbootable(update.slot), install(update, *choice)];
            go(state, to, effects, None)
        }
        Event::DownloadFailed { reason } => delta_failed(state, update, fallback, reason),
        Event::JobDeadline => failed(
            state,
            update,
            "deadline passed".into(),
            vec![Action::DiscardDownload],
        ),
        Event::Booted { .. } => stay(
            state,
            vec![Action::Download {
                artifact: artifact.clone(),
                from: *done,
            }],
        ),
        _ => None,
    }
}

fn install(update: &Update, choice: PayloadChoice) -> Action {
    Action::Install {
        slot: update.slot,
        choice,
    }
}

fn installing(state: &State, event: &Event) -> Outcome {
    let State::Installing {
        update,
        choice,
        fallback,
        ..
    } = state
    else {
        return None;
    };
    match event {
        Event::InstallDone {
            image,
            security_version,
        } => {
            let staging = Staging {
                update: update.clone(),
                image: image.clone(),
                security_version: *security_version,
                attempts: 0,
            };
            go(state, State::Staged(staging), vec![Action::DiscardDownload], None)
        }
        Event::InstallFailed { reason } => delta_failed(state, update, fallback, reason),
        Event::JobDeadline => failed(
            state,
            update,
            "deadline passed".into(),
            vec![Action::DiscardDownload],
        ),
        Event::Booted { .. } => stay(
            state,
            vec![Action::MarkUnbootable(update.slot), install(update, *choice)],
        ),
        _ => None,
    }
}

fn staged(policy: &Policy, state: &State, staging: &Staging, event: &Event) -> Outcome {
    match event {
        Event::WindowOpen if staging.attempts >= policy.max_arm_attempts => {
            let reason = format!(
                "slot {:?} did not boot after {} attempts",
                staging.update.slot, staging.attempts
            );
            rolled_back(
                state,
                staging,
                reason,
                vec![Action::MarkUnbootable(staging.update.slot)],
            )
        }
        Event::WindowOpen => {
            let mut staging = staging.clone();
            staging.attempts += 1;
            let effects = vec![Action::SetNext {
                slot: staging.update.slot,
                tries: policy.boot_tries,
            }];
            go(
                state,
                State::Rebooting {
                    staging,
                    armed: false,
                },
                effects,
                None,
            )
        }
        Event::JobDeadline => failed(
            state,
            &staging.update,
            "deadline passed before the reboot window".into(),
            vec![],
        ),
        Event::Booted { .. } => stay(state, vec![]),
        _ => None,
    }
}

fn rolled_back(state: &State, staging: &Staging, reason: String, effects: Vec<Action>) -> Outcome {
    let to = State::RolledBack {
        version: staging.update.version.clone(),
        slot: Some(staging.update.slot),
        rollout: staging.update.rollout.clone(),
        reason: reason.clone(),
    };
    go(state, to, effects, Some(reason))
}

/// How a boot relates to the staged image.
enum BootSeen {
    /// The staged slot with the staged image.
    Target,
    /// The staged slot with another image.
    WrongImage(String),
    /// The other slot: the bootloader did not (or no longer) boot the staged one.
    Other,
}

fn classify(staging: &Staging, slot: Slot, image: Option<Sha256>) -> BootSeen {
    if slot != staging.update.slot {
        return BootSeen::Other;
    }
    match image {
        Some(h) if h == staging.image.sha256 => BootSeen::Target,
        other => BootSeen::WrongImage(format!(
            "slot {slot:?} runs image {}, expected {}",
            other.map_or_else(|| "unknown".to_owned(), |h| h.to_hex()),
            staging.image.sha256
        )),
    }
}

fn start_trial(state: &State, staging: &Staging, boots: u8, policy: &Policy, now: u64) -> Outcome {
    let to = State::Trial {
        staging: staging.clone(),
        deadline: now.saturating_add(policy.trial_timeout),
        boots,
    };
    go(state, to, vec![Action::StartHealthChecks], None)
}

fn unbootable_and_reboot(slot: Slot) -> Vec<Action> {
    vec![Action::MarkUnbootable(slot), Action::Reboot]
}

fn rebooting(
    policy: &Policy,
    state: &State,
    staging: &Staging,
    armed: bool,
    event: &Event,
    now: u64,
) -> Outcome {
    let slot = staging.update.slot;
    match (event, armed) {
        (Event::NextSet, false) => {
            let to = State::Rebooting {
                staging: staging.clone(),
                armed: true,
            };
            go(state, to, vec![Action::Reboot], None)
        }
        (Event::Booted { slot: booted, image }, _) => match classify(staging, *booted, *image) {
            BootSeen::Target => start_trial(state, staging, 1, policy, now),
            BootSeen::WrongImage(reason) => rolled_back(state, staging, reason, unbootable_and_reboot(slot)),
            BootSeen::Other if !armed => go(state, State::Staged(staging.clone()), vec![], None),
            BootSeen::Other => {
                let reason = format!("bootloader fell back: slot {slot:?} did not boot");
                rolled_back(state, staging, reason, vec![])
            }
        },
        _ => None,
    }
}

fn trial(policy: &Policy, state: &State, staging: &Staging, boots: u8, event: &Event, now: u64) -> Outcome {
    let slot = staging.update.slot;
    let abandon = |reason: String| {
        let mut effects = vec![Action::StopHealthChecks];
        effects.extend(unbootable_and_reboot(slot));
        rolled_back(state, staging, reason, effects)
    };
    match event {
        Event::HealthPassed => {
            let to = State::Committed {
                slot,
                image: staging.image.clone(),
                security_version: staging.security_version,
                rollout: staging.update.rollout.clone(),
            };
            go(
                state,
                to,
                vec![Action::StopHealthChecks, Action::MarkSuccessful(slot)],
                None,
            )
        }
        Event::HealthFailed { reason } => abandon(format!("health check failed: {reason}")),
        Event::TrialDeadline => abandon("trial deadline passed without a healthy verdict".into()),
        Event::Booted { slot: booted, image } => match classify(staging, *booted, *image) {
            BootSeen::Target if boots >= policy.max_trial_boots => {
                abandon(format!("slot {slot:?} restarted {boots} times during its trial"))
            }
            BootSeen::Target => start_trial(state, staging, boots + 1, policy, now),
            BootSeen::WrongImage(reason) => abandon(reason),
            BootSeen::Other => {
                let reason = format!("bootloader fell back during the trial of slot {slot:?}");
                rolled_back(state, staging, reason, vec![])
            }
        },
        _ => None,
    }
}

fn settled(state: &State, event: &Event) -> Outcome {
    let Event::Booted { slot: booted, .. } = event else {
        return None;
    };
    match state {
        State::Committed { slot, .. } if slot == booted => stay(state, vec![Action::MarkSuccessful(*slot)]),
        State::Committed {
            slot, image, rollout, ..
        } => {
            let reason =
                format!("bootloader fell back from committed slot {slot:?} before it was marked good");
            let to = State::RolledBack {
                version: image.version.clone(),
                slot: Some(*slot),
                rollout: rollout.clone(),
                reason: reason.clone(),
            };
            go(state, to, vec![], Some(reason))
        }
        State::RolledBack { slot: Some(slot), .. } if slot == booted => {
            stay(state, unbootable_and_reboot(*slot))
        }
        _ => stay(state, vec![]),
    }
}
