//! The state machine, table-style: every (state × event) pair is generated into `docs/agent-fsm.md`
//! (this test fails when the doc and the code differ; `HALYARD_BLESS=1` rewrites it), plus the rules
//! every row obeys and the rows whose data matters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use halyard_node::fsm::table::{self, SAMPLE_NOW, sample_events, sample_states};
use halyard_node::fsm::{Action, Event, PayloadChoice, State, next, wakeup};
use halyard_protocol::{AgentState, Slot};

const BEGIN: &str = "<!-- BEGIN GENERATED TABLE (node/tests/fsm.rs) -->\n";
const END: &str = "<!-- END GENERATED TABLE -->";

#[test]
fn committed_doc_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/agent-fsm.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = doc.find(END).expect("end marker");
    let generated = table::markdown();
    if std::env::var_os("HALYARD_BLESS").is_some() {
        let new = format!("{}{}{}", &doc[..start], generated, &doc[end..]);
        std::fs::write(path, new).unwrap();
        return;
    }
    assert_eq!(
        doc[start..end],
        generated,
        "docs/agent-fsm.md is stale: run HALYARD_BLESS=1 cargo test -p halyard-node --test fsm"
    );
}

#[test]
fn table_covers_every_pair_and_names_refusals() {
    let states = sample_states();
    let events = sample_events();
    let rows = table::rows();
    assert_eq!(rows.len(), states.len() * events.len());
    assert_eq!(states.len(), 10, "9 states, Rebooting sampled twice");
    let refused = rows.iter().filter(|r| r.next.is_none()).count();
    assert!(refused > 50 && refused < rows.len() - 30, "refused {refused}");
    for state in &states {
        for (_, event) in &events {
            if let Err(e) = next(state, event, SAMPLE_NOW) {
                assert_eq!((e.state, e.event), (state.name(), event.name()));
                assert!(e.to_string().contains("not allowed"));
            }
        }
    }
}

#[test]
fn every_durable_change_journals_first_and_emits_wire_changes() {
    for state in sample_states() {
        for (label, event) in sample_events() {
            let Ok((to, actions)) = next(&state, &event, SAMPLE_NOW) else {
                continue;
            };
            let journals: Vec<_> = actions
                .iter()
                .filter(|a| matches!(a, Action::Journal(_)))
                .collect();
            if to == state {
                assert!(
                    journals.is_empty(),
                    "{} × {label} journals without change",
                    state.name()
                );
                continue;
            }
            assert_eq!(
                actions.first(),
                Some(&Action::Journal(to.clone())),
                "{} × {label}",
                state.name()
            );
            assert_eq!(journals.len(), 1);
            let emitted = actions.iter().any(|a| matches!(a, Action::Emit { .. }));
            // Download progress is journaled and reported by the driver, not emitted as a transition.
            let progress = matches!(event, Event::DownloadProgress { .. });
            assert_eq!(
                emitted,
                !progress && state.wire() != to.wire(),
                "{} × {label}",
                state.name()
            );
        }
    }
}

fn outcome(state_name: &str, event_label: &str) -> (State, Vec<Action>) {
    let state = sample_states()
        .into_iter()
        .find(|s| s.name() == state_name)
        .unwrap();
    let event = sample_events()
        .into_iter()
        .find(|(l, _)| *l == event_label)
        .unwrap()
        .1;
    next(&state, &event, SAMPLE_NOW).unwrap()
}

#[test]
fn install_picks_the_delta_whose_source_is_running() {
    let (to, actions) = outcome("Idle", "Desired(install)");
    let State::Downloading {
        update,
        artifact,
        choice,
        fallback,
        done,
    } = &to
    else {
        panic!("{to:?}")
    };
    assert!(fallback.as_ref().is_some_and(|f| f.url.ends_with("full-3.0.0")));
    assert_eq!(
        (update.version.as_str(), update.slot, *choice, *done),
        ("3.0.0", Slot::B, PayloadChoice::Delta, 0)
    );
    assert!(artifact.url.ends_with("delta-1.0.0-3.0.0"));
    assert!(matches!(&actions[2], Action::Download { from: 0, .. }));
    // Without a matching source the full bundle is chosen.
    let (_, event) = sample_events().into_iter().next().unwrap();
    let Event::Desired {
        rollout,
        action,
        mut running,
    } = event
    else {
        panic!()
    };
    running.image.as_mut().unwrap().sha256 = halyard_protocol::Sha256::of(b"other");
    let (to, _) = next(
        &State::Idle,
        &Event::Desired {
            rollout,
            action,
            running,
        },
        SAMPLE_NOW,
    )
    .unwrap();
    assert!(matches!(
        to,
        State::Downloading {
            choice: PayloadChoice::Full,
            ..
        }
    ));
}

#[test]
fn a_failed_delta_falls_back_to_the_full_bundle_once() {
    let (to, actions) = outcome("Downloading", "DownloadFailed");
    let State::Downloading {
        artifact,
        choice,
        fallback,
        done,
        ..
    } = &to
    else {
        panic!("{to:?}")
    };
    assert!(artifact.url.ends_with("full-2.0.0"));
    assert_eq!((*choice, fallback, *done), (PayloadChoice::Full, &None, 0));
    assert!(
        matches!(&actions[2], Action::Download { from: 0, artifact } if artifact.url.ends_with("full-2.0.0"))
    );
    let reason = actions.iter().find_map(|a| match a {
        Action::Emit { reason, .. } => reason.clone(),
        _ => None,
    });
    assert!(reason.is_some_and(|r| r.contains("HTTP 404") && r.contains("falling back")));
    // The full bundle failing too is final.
    let (to, _) = next(
        &to,
        &Event::DownloadFailed {
            reason: "again".into(),
        },
        SAMPLE_NOW,
    )
    .unwrap();
    assert!(matches!(to, State::Failed { .. }));
    let (to, _) = outcome("Installing", "InstallFailed");
    assert!(
        matches!(to, State::Failed { .. }),
        "the sample install is already the full bundle"
    );
}

#[test]
fn restart_resumes_download_and_reinstalls() {
    let (_, actions) = outcome("Downloading", "Booted(A, old image)");
    assert!(matches!(actions.as_slice(), [Action::Download { from: 500, .. }]));
    let (_, actions) = outcome("Installing", "Booted(A, old image)");
    assert!(matches!(
        actions.as_slice(),
        [
            Action::MarkUnbootable(Slot::B),
            Action::Install { slot: Slot::B, .. }
        ]
    ));
}

#[test]
fn arming_then_booting_leads_to_trial_or_rollback() {
    let (to, actions) = outcome("Staged", "WindowOpen");
    assert!(matches!(to, State::Rebooting { armed: false, ref staging } if staging.attempts == 2));
    assert!(matches!(
        actions[1],
        Action::SetNext {
            slot: Slot::B,
            tries: 3
        }
    ));
    let (to, _) = outcome("Rebooting(arming)", "Booted(A, old image)");
    assert!(
        matches!(to, State::Staged(_)),
        "set_next never landed: stage again"
    );
    let (to, actions) = outcome("Rebooting(armed)", "Booted(B, new image)");
    assert!(matches!(to, State::Trial { deadline, boots: 1, .. } if deadline == SAMPLE_NOW + 600));
    assert!(actions.contains(&Action::StartHealthChecks));
    let (to, _) = outcome("Rebooting(armed)", "Booted(A, old image)");
    assert!(matches!(&to, State::RolledBack { reason, .. } if reason.contains("fell back")));
}

#[test]
fn trial_commits_or_rolls_back_with_reason() {
    let (to, actions) = outcome("Trial", "HealthPassed");
    assert!(matches!(
        to,
        State::Committed {
            slot: Slot::B,
            security_version: 2,
            ..
        }
    ));
    assert!(actions.contains(&Action::MarkSuccessful(Slot::B)));
    let (to, actions) = outcome("Trial", "HealthFailed");
    assert!(
        matches!(&to, State::RolledBack { reason, slot: Some(Slot::B), .. } if reason.contains("tcp 127.0.0.1:80"))
    );
    // The event and the report go out before the reboot, since nothing runs after it.
    let names: Vec<_> = actions.iter().map(Action::name).collect();
    assert_eq!(
        names,
        [
            "journal",
            "stop_health",
            "mark_unbootable",
            "emit",
            "report",
            "reboot"
        ]
    );
    assert!(actions.contains(&Action::MarkUnbootable(Slot::B)));
    let emitted = actions.iter().find_map(|a| match a {
        Action::Emit { to, .. } => Some(to.clone()),
        _ => None,
    });
    assert!(matches!(emitted, Some(AgentState::RolledBack { .. })));
    // A power cut before mark_unbootable: the bad slot boots again and is refused again.
    let (_, actions) = outcome("RolledBack", "Booted(B, new image)");
    assert_eq!(actions, [Action::MarkUnbootable(Slot::B), Action::Reboot]);
}

#[test]
fn settled_states_ignore_a_release_they_already_handled() {
    let (_, event) = sample_events().into_iter().next().unwrap();
    let Event::Desired { action, running, .. } = event else {
        panic!()
    };
    let failed = State::Failed {
        version: Some("3.0.0".into()),
        rollout: Some("r2".into()),
        reason: "x".into(),
    };
    let again = Event::Desired {
        rollout: Some("r2".into()),
        action: action.clone(),
        running: running.clone(),
    };
    assert_eq!(
        next(&failed, &again, SAMPLE_NOW).unwrap(),
        (failed.clone(), vec![])
    );
    let new_rollout = Event::Desired {
        rollout: Some("r3".into()),
        action,
        running,
    };
    assert!(matches!(
        next(&failed, &new_rollout, SAMPLE_NOW).unwrap().0,
        State::Downloading { .. }
    ));
}

#[test]
fn wakeup_fires_windows_and_deadlines() {
    let states = sample_states();
    let staged = states.iter().find(|s| s.name() == "Staged").unwrap();
    assert_eq!(wakeup(staged, SAMPLE_NOW), Some(Event::WindowOpen));
    assert_eq!(wakeup(staged, SAMPLE_NOW + 3601), Some(Event::JobDeadline));
    let trial = states.iter().find(|s| s.name() == "Trial").unwrap();
    assert_eq!(wakeup(trial, SAMPLE_NOW), None);
    assert_eq!(wakeup(trial, SAMPLE_NOW + 600), Some(Event::TrialDeadline));
    assert_eq!(wakeup(&State::Idle, u64::MAX), None);
}

#[test]
fn states_round_trip_through_json() {
    for state in sample_states() {
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<State>(&text).unwrap(), state);
    }
}

mod walks {
    use halyard_node::fsm::table::{SAMPLE_NOW, sample_events};
    use halyard_node::fsm::{Action, State, next};
    use proptest::prelude::*;

    proptest! {
        /// Random walks from Idle over every event: refusals leave the state alone (the caller keeps
        /// it), accepted changes journal first, and every reached state survives a JSON round trip.
        #[test]
        fn random_walks_keep_the_journal_rule(picks in proptest::collection::vec(0usize..16, 1..60), dt in 0u64..2000) {
            let events = sample_events();
            let mut state = State::Idle;
            let mut now = SAMPLE_NOW;
            for pick in picks {
                let (_, event) = &events[pick % events.len()];
                now += dt;
                let Ok((to, actions)) = next(&state, event, now) else { continue };
                if to != state {
                    prop_assert_eq!(actions.first(), Some(&Action::Journal(to.clone())));
                } else {
                    prop_assert!(!actions.iter().any(|a| matches!(a, Action::Journal(_))));
                }
                let text = serde_json::to_string(&to).unwrap();
                prop_assert_eq!(serde_json::from_str::<State>(&text).unwrap(), to.clone());
                state = to;
            }
        }
    }
}

#[test]
fn a_staged_image_waits_for_the_new_window_of_the_same_release() {
    use halyard_protocol::{DesiredAction, Window};
    let staged = sample_states()
        .into_iter()
        .find(|s| matches!(s, State::Staged(_)))
        .unwrap();
    let State::Staged(before) = &staged else { panic!() };
    let (_, event) = sample_events().into_iter().next().unwrap();
    let Event::Desired {
        mut action, running, ..
    } = event
    else {
        panic!()
    };
    let later = Window {
        not_before: SAMPLE_NOW + 86_400,
        not_after: SAMPLE_NOW + 90_000,
    };
    let DesiredAction::Install { version, window, .. } = &mut action else {
        panic!()
    };
    *version = before.update.version.clone();
    *window = Some(later);
    let moved = Event::Desired {
        rollout: before.update.rollout.clone(),
        action,
        running,
    };
    let (to, actions) = next(&staged, &moved, SAMPLE_NOW).unwrap();
    let State::Staged(after) = &to else {
        panic!("{to:?}")
    };
    assert_eq!(after.update.window, Some(later));
    assert_eq!(
        after.image, before.image,
        "the image stays staged: nothing is fetched again"
    );
    assert!(matches!(actions.as_slice(), [Action::Journal(_)]), "{actions:?}");
    assert_eq!(next(&to, &moved, SAMPLE_NOW).unwrap(), (to.clone(), vec![]));
    assert_eq!(wakeup(&to, SAMPLE_NOW), None, "waits for the new window");
    assert_eq!(wakeup(&to, later.not_before), Some(Event::WindowOpen));
}
