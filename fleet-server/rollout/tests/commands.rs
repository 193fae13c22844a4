//! Operator commands: the (command, status) table, and what each one does to devices.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use halyard_rollout::*;

fn fleet() -> Fleet {
    let now = ts("2026-06-01T10:00:00Z");
    let devs = devices(&["ber", "nyc"], &["pos-arm", "kiosk-x86"], 10, now);
    let sites = vec![site("ber", "Europe/Berlin"), site("nyc", "America/New_York")];
    Fleet::new(three_waves(Breach::Pause), devs, sites, now)
}

fn status(name: &str) -> Status {
    let reason = "test".to_owned();
    match name {
        "running" => Status::Running,
        "paused" => Status::Paused { reason },
        "completed" => Status::Completed,
        "reverting" => Status::Reverting { reason },
        "reverted" => Status::Reverted { reason },
        _ => Status::Aborted { reason },
    }
}

const STATUSES: [&str; 6] = [
    "running",
    "paused",
    "completed",
    "reverting",
    "reverted",
    "aborted",
];
const COMMANDS: [Command; 4] = [Command::Pause, Command::Resume, Command::Abort, Command::Rollback];

/// Runs `cmd` on a rollout whose wave 1 is installed and committed, put in status `before`.
/// Returns the status after, or `None` for a typed refusal (checked to change nothing).
fn outcome(before: &str, cmd: Command) -> Option<&'static str> {
    let mut f = fleet();
    let first = f.step();
    f.apply(&first);
    f.state.status = status(before);
    match f.command(cmd) {
        Ok(_) => Some(f.state.status.name()),
        Err(err) => {
            let expected = CommandError::NotAllowed {
                rollout: "r1".into(),
                command: cmd,
                status: status(before).name(),
            };
            assert_eq!(err, expected);
            assert_eq!(
                f.state.status,
                status(before),
                "a refused command changes nothing"
            );
            None
        }
    }
}

/// Rows: (status before, command, status after or None for a typed refusal).
#[test]
fn command_table() {
    use Command::*;
    let rows = [
        ("running", Pause, Some("paused")),
        ("running", Resume, None),
        ("running", Abort, Some("aborted")),
        ("running", Rollback, Some("reverting")),
        ("paused", Pause, None),
        ("paused", Resume, Some("running")),
        ("paused", Abort, Some("aborted")),
        ("paused", Rollback, Some("reverting")),
        ("completed", Pause, None),
        ("completed", Resume, None),
        ("completed", Abort, None),
        ("completed", Rollback, Some("reverting")),
        ("reverting", Pause, None),
        ("reverting", Resume, None),
        ("reverting", Abort, Some("aborted")),
        ("reverting", Rollback, None),
        ("reverted", Pause, None),
        ("reverted", Resume, None),
        ("reverted", Abort, None),
        ("reverted", Rollback, None),
        ("aborted", Pause, None),
        ("aborted", Resume, None),
        ("aborted", Abort, None),
        ("aborted", Rollback, Some("reverting")),
    ];
    assert_eq!(
        rows.len(),
        STATUSES.len() * COMMANDS.len(),
        "every (status, command) pair"
    );
    for (before, cmd, after) in rows {
        assert_eq!(outcome(before, cmd), after, "{before} + {cmd}");
    }
}

/// docs/rollout.md's command table is generated from the code (HALYARD_BLESS=1 rewrites it).
#[test]
fn command_table_in_the_docs_matches_the_code() {
    let mut table =
        String::from("| status \\ command | pause | resume | abort | rollback |\n|---|---|---|---|---|\n");
    for before in STATUSES {
        let cells: Vec<String> = COMMANDS
            .iter()
            .map(|cmd| outcome(before, *cmd).map_or("refused".to_owned(), |s| format!("→ `{s}`")))
            .collect();
        table.push_str(&format!("| `{before}` | {} |\n", cells.join(" | ")));
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rollout.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (open, close) = ("<!-- command-table -->\n", "<!-- /command-table -->");
    let start = doc.find(open).unwrap() + open.len();
    let end = doc.find(close).unwrap();
    if std::env::var_os("HALYARD_BLESS").is_some() {
        let fresh = format!("{}{table}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, fresh).unwrap();
    } else {
        assert_eq!(
            &doc[start..end],
            table,
            "docs/rollout.md is stale: run HALYARD_BLESS=1 cargo test -p halyard-rollout --test commands"
        );
    }
}

#[test]
fn refusal_reads_well() {
    let mut f = fleet();
    f.state.status = Status::Completed;
    let err = f.command(Command::Resume).unwrap_err();
    assert_eq!(err.to_string(), "cannot resume rollout r1: it is completed");
}

#[test]
fn pause_stops_installs_and_resume_continues() {
    let mut f = fleet();
    f.run(600, 1);
    f.command(Command::Pause).unwrap();
    for _ in 0..20 {
        f.tick(600);
        assert!(f.step().is_empty(), "paused: no installs");
    }
    let before = f.installs().len();
    assert_eq!(f.state.wave_index, 0, "paused in wave 1");
    f.command(Command::Resume).unwrap();
    f.run(600, 100);
    assert_eq!(f.state.status, Status::Completed);
    assert!(f.installs().len() > before);
    let who = f
        .decisions
        .iter()
        .find(|d| d.kind == DecisionKind::Paused)
        .unwrap();
    assert_eq!(who.message, "pause by alice");
}

#[test]
fn resume_after_breach_forgives_seen_failures_but_not_new_ones() {
    let mut f = fleet();
    let first = f.step();
    f.apply(&first);
    let canaries = f.state.waves[0].devices.clone();
    react(f.dev(&canaries[0]), NEW, Behave::InstallFails);
    f.tick(60);
    f.step();
    assert!(
        matches!(f.state.status, Status::Paused { .. }),
        "budget 0 in wave 1"
    );
    f.command(Command::Resume).unwrap();
    f.tick(60);
    f.step();
    assert_eq!(
        f.state.status,
        Status::Running,
        "the forgiven failure does not pause again"
    );
    f.dev(&canaries[1]).healthy = Some(false);
    f.tick(60);
    f.step();
    assert!(
        matches!(f.state.status, Status::Paused { .. }),
        "a new failure does"
    );
}

#[test]
fn abort_cancels_only_devices_that_have_not_switched_slots() {
    let mut f = fleet();
    let first = f.step();
    let ids = f.installs();
    f.apply(&first);
    (f.dev(&ids[0]).phase, f.dev(&ids[0]).active_version) = (Phase::Downloading, Some(OLD.into()));
    react(f.dev(&ids[1]), NEW, Behave::StuckStaged);
    let actions = f.command(Command::Abort).unwrap();
    assert_eq!(
        actions,
        vec![Action::Cancel {
            device: ids[0].clone()
        }]
    );
    assert!(matches!(&f.state.status, Status::Aborted { reason } if reason == "abort by alice"));
    f.tick(600);
    assert!(f.step().is_empty(), "an aborted rollout issues nothing");
}

#[test]
fn manual_rollback_reverts_like_a_breach() {
    let mut f = fleet();
    f.run(600, 100);
    assert_eq!(f.state.status, Status::Completed);
    let actions = f.command(Command::Rollback).unwrap();
    assert_eq!(actions.len(), 40);
    assert!(
        actions
            .iter()
            .all(|a| matches!(a, Action::Revert { to_version, .. } if to_version == OLD))
    );
    assert!(matches!(f.state.status, Status::Reverting { .. }));
    f.apply(&actions);
    f.tick(60);
    f.step();
    assert!(matches!(f.state.status, Status::Reverted { .. }));
    assert!(
        !f.actions.iter().any(|a| matches!(a, Action::Quarantine { .. })),
        "no failures, no quarantine"
    );
}

#[test]
fn rollback_while_paused_on_a_breach_quarantines_the_failing_class() {
    let mut f = fleet();
    f.behave = |d| {
        if d.hw_class == "kiosk-x86" {
            Behave::RollsBack
        } else {
            Behave::Good
        }
    };
    f.run(600, 100);
    assert!(matches!(f.state.status, Status::Paused { .. }));
    let actions = f.command(Command::Rollback).unwrap();
    let q: Vec<&Action> = actions
        .iter()
        .filter(|a| matches!(a, Action::Quarantine { .. }))
        .collect();
    assert_eq!(q.len(), 1);
    assert!(matches!(q[0], Action::Quarantine { hw_class, .. } if hw_class == "kiosk-x86"));
    assert!(
        f.command(Command::Rollback).is_err(),
        "second rollback refused: already reverting/reverted"
    );
}

#[test]
fn state_round_trips_through_json() {
    let mut f = fleet();
    f.run(600, 3);
    let json = serde_json::to_string_pretty(&f.state).unwrap();
    let back: RolloutState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, f.state);
    assert!(json.contains("\"status\": \"running\""), "{json}");
}
