//! The transition table as data: one sample of every state and every event, the outcome of
//! [`super::next`] for each pair, and the Markdown rendering committed as `docs/agent-fsm.md`.
//!
//! The sample world: the device runs slot A with release 1.0.0; slot B is the update target. 2.0.0 is
//! being downloaded as a delta (full bundle as fallback) and installed from its full bundle; staged
//! and later states hold release 2.0.0 in B; `Desired(install)` offers 3.0.0 (full bundle and a delta
//! from 1.0.0); `Desired(switch)` asks for 0.9.0, which slot B holds in the `running` view.

use halyard_protocol::{Artifact, DeltaOffer, DesiredAction, Sha256, Slot};

use super::{Event, Image, PayloadChoice, Running, Staging, State, Update, next};

/// "Now" of every sample transition (Unix seconds).
pub const SAMPLE_NOW: u64 = 1_780_000_000;

fn image(version: &str) -> Image {
    Image {
        version: version.to_owned(),
        size: 4096,
        sha256: Sha256::of(version.as_bytes()),
    }
}

fn artifact(name: &str) -> Artifact {
    Artifact {
        url: format!("https://server.invalid/v1/artifacts/{name}"),
        sha256: Sha256::of(name.as_bytes()),
        size: 1000,
    }
}

fn update(version: &str) -> Update {
    Update {
        rollout: Some("r1".into()),
        version: version.to_owned(),
        slot: Slot::B,
        window: None,
        deadline: Some(SAMPLE_NOW + 3600),
    }
}

fn staging() -> Staging {
    Staging {
        update: update("2.0.0"),
        image: image("2.0.0"),
        security_version: 2,
        attempts: 1,
    }
}

/// One sample of every state (Rebooting twice: arming and armed).
pub fn sample_states() -> Vec<State> {
    vec![
        State::Idle,
        State::Downloading {
            update: update("2.0.0"),
            artifact: artifact("delta-1.0.0-2.0.0"),
            choice: PayloadChoice::Delta,
            fallback: Some(artifact("full-2.0.0")),
            done: 500,
        },
        State::Installing {
            update: update("2.0.0"),
            artifact: artifact("full-2.0.0"),
            choice: PayloadChoice::Full,
            fallback: None,
        },
        State::Staged(staging()),
        State::Rebooting {
            staging: staging(),
            armed: false,
        },
        State::Rebooting {
            staging: staging(),
            armed: true,
        },
        State::Trial {
            staging: staging(),
            deadline: SAMPLE_NOW + 600,
            boots: 1,
        },
        State::Committed {
            slot: Slot::B,
            image: image("2.0.0"),
            security_version: 2,
            rollout: Some("r1".into()),
        },
        State::RolledBack {
            version: "2.0.0".into(),
            slot: Some(Slot::B),
            rollout: Some("r1".into()),
            reason: "health check failed".into(),
        },
        State::Failed {
            version: Some("2.0.0".into()),
            rollout: Some("r1".into()),
            reason: "download failed".into(),
        },
    ]
}

fn running() -> Running {
    Running {
        slot: Slot::A,
        image: Some(image("1.0.0")),
        other: Some(image("0.9.0")),
    }
}

fn desired(action: DesiredAction) -> Event {
    Event::Desired {
        rollout: Some("r2".into()),
        action,
        running: running(),
    }
}

/// One sample of every event, with a label for the table (Booted twice: new slot B and old slot A).
pub fn sample_events() -> Vec<(&'static str, Event)> {
    let install = DesiredAction::Install {
        version: "3.0.0".into(),
        bundle: artifact("full-3.0.0"),
        deltas: vec![DeltaOffer {
            source_sha256: image("1.0.0").sha256,
            artifact: artifact("delta-1.0.0-3.0.0"),
        }],
        window: None,
        deadline: None,
    };
    let switch = DesiredAction::Switch {
        version: "0.9.0".into(),
        image_sha256: image("0.9.0").sha256,
    };
    vec![
        ("Desired(install)", desired(install)),
        ("Desired(stay)", desired(DesiredAction::Stay)),
        ("Desired(switch)", desired(switch)),
        ("DownloadProgress", Event::DownloadProgress { done: 900 }),
        ("DownloadDone", Event::DownloadDone),
        (
            "DownloadFailed",
            Event::DownloadFailed {
                reason: "HTTP 404".into(),
            },
        ),
        (
            "InstallDone",
            Event::InstallDone {
                image: image("2.0.0"),
                security_version: 2,
            },
        ),
        (
            "InstallFailed",
            Event::InstallFailed {
                reason: "bad signature".into(),
            },
        ),
        ("WindowOpen", Event::WindowOpen),
        ("NextSet", Event::NextSet),
        ("Booted(B, new image)", booted(Slot::B, "2.0.0")),
        ("Booted(A, old image)", booted(Slot::A, "1.0.0")),
        ("HealthPassed", Event::HealthPassed),
        (
            "HealthFailed",
            Event::HealthFailed {
                reason: "tcp 127.0.0.1:80 refused".into(),
            },
        ),
        ("TrialDeadline", Event::TrialDeadline),
        ("JobDeadline", Event::JobDeadline),
    ]
}

fn booted(slot: Slot, version: &str) -> Event {
    Event::Booted {
        slot,
        image: Some(image(version).sha256),
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// State name.
    pub state: &'static str,
    /// Event label.
    pub event: &'static str,
    /// The next state's name (`None` when not allowed).
    pub next: Option<&'static str>,
    /// Action names in order.
    pub actions: Vec<&'static str>,
}

/// Every (sample state × sample event) outcome.
pub fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for state in sample_states() {
        for (label, event) in sample_events() {
            let outcome = next(&state, &event, SAMPLE_NOW).ok();
            rows.push(Row {
                state: state.name(),
                event: label,
                next: outcome.as_ref().map(|(s, _)| s.name()),
                actions: outcome
                    .map(|(_, a)| a.iter().map(super::Action::name).collect())
                    .unwrap_or_default(),
            });
        }
    }
    rows
}

/// The generated part of `docs/agent-fsm.md`.
pub fn markdown() -> String {
    let mut out = String::from("| State | Event | Next state | Actions |\n|---|---|---|---|\n");
    for row in rows() {
        let (next, actions) = match row.next {
            None => ("*not allowed*".to_owned(), String::new()),
            Some(n) if n == row.state && row.actions.is_empty() => ("(unchanged)".to_owned(), String::new()),
            Some(n) => (n.to_owned(), row.actions.join(", ")),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            row.state, row.event, next, actions
        ));
    }
    out
}
