//! The store conformance suite: every `Store` backend must pass every check here. The SQLite backend
//! runs it in memory and on a file that is reopened; the PostgreSQL backend runs it on a fresh database
//! per check (`tests/store_conformance/postgres.rs`), plus the checks only a shared database needs:
//! concurrent writers and the engine lease fence.

use halyard_protocol::{AgentState, DeviceId, Kind, Report, Slot, SlotReport};
use halyard_server::model::*;
use halyard_server::store::sqlite::SqliteStore;
use halyard_server::store::{EnrollOutcome, Ingest, IngestItem, StepCommit, Store, StoreError};

#[path = "store_conformance/changes.rs"]
mod changes;
#[path = "store_conformance/enroll.rs"]
mod enroll_many;
#[path = "store_conformance/events.rs"]
mod events;
#[cfg(feature = "postgres")]
#[path = "store_conformance/postgres.rs"]
mod postgres;

/// One named check of the suite.
type Check = (&'static str, fn(&dyn Store));

const CHECKS: &[Check] = &[
    ("tokens", tokens),
    ("enrollment_is_one_time", enrollment_is_one_time),
    (
        "enroll_many_matches_one_at_a_time",
        enroll_many::enroll_many_matches_one_at_a_time,
    ),
    (
        "token_batches_are_all_or_none",
        enroll_many::token_batches_are_all_or_none,
    ),
    ("ingest_refuses_replays", ingest_refuses_replays),
    ("ingest_batch_isolates_failures", ingest_batch_isolates_failures),
    (
        "ingest_batches_match_one_batch_at_a_time",
        events::ingest_batches_match_one_batch_at_a_time,
    ),
    (
        "out_of_order_events_are_kept",
        events::out_of_order_events_are_kept,
    ),
    (
        "duplicate_events_are_refused",
        events::duplicate_events_are_refused,
    ),
    (
        "events_older_than_the_window_are_refused",
        events::events_older_than_the_window_are_refused,
    ),
    (
        "reports_and_presence_stay_newest_wins",
        events::reports_and_presence_stay_newest_wins,
    ),
    (
        "every_device_write_is_in_the_feed",
        changes::every_device_write_is_in_the_feed,
    ),
    (
        "a_replay_does_not_touch_the_row",
        changes::a_replay_does_not_touch_the_row,
    ),
    (
        "messages_that_change_nothing_are_kept_and_changes_are_not_lost",
        changes::messages_that_change_nothing_are_kept_and_changes_are_not_lost,
    ),
    (
        "desired_seqs_are_the_last_issued",
        changes::desired_seqs_are_the_last_issued,
    ),
    (
        "rollout_revisions_move_with_every_write",
        changes::rollout_revisions_move_with_every_write,
    ),
    ("sites_round_trip", sites_round_trip),
    ("releases_and_quarantine", releases_and_quarantine),
    ("commit_step_is_atomic", commit_step_is_atomic),
    ("audit_and_meta", audit_and_meta),
    ("broker_credentials", broker_credentials),
];

fn run_all(make: impl Fn() -> Box<dyn Store>) {
    for (name, check) in CHECKS {
        eprintln!("conformance: {name}");
        check(make().as_ref());
    }
}

#[test]
fn sqlite_in_memory_passes_the_suite() {
    run_all(|| Box::new(SqliteStore::in_memory().expect("open")));
}

#[test]
fn sqlite_file_passes_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = std::cell::Cell::new(0);
    run_all(|| {
        n.set(n.get() + 1);
        Box::new(SqliteStore::open(&dir.path().join(format!("{}.db", n.get()))).expect("open"))
    });
}

#[test]
fn sqlite_state_survives_reopen_and_newer_schemas_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("halyard.db");
    {
        let s = SqliteStore::open(&path).expect("open");
        enroll(&s, "t1", 1);
        s.put_meta("k", "v").expect("meta");
    }
    let s = SqliteStore::open(&path).expect("reopen");
    assert_eq!(s.devices().expect("devices").len(), 1);
    assert_eq!(s.meta("k").expect("meta").as_deref(), Some("v"));
    drop(s);
    rusqlite_user_version(&path, 999);
    match SqliteStore::open(&path) {
        Err(StoreError::SchemaTooNew { found: 999, .. }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

fn rusqlite_user_version(path: &std::path::Path, v: i64) {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update(None, "user_version", v)
        .expect("set user_version");
}

fn dev_id(n: u8) -> DeviceId {
    DeviceId::from_public_key(&[n; 32])
}

fn new_device(n: u8) -> NewDevice {
    NewDevice {
        id: dev_id(n),
        public_key: hex::encode([n; 32]),
        product: "kiosk".into(),
        hardware_class: "pos-x86".into(),
    }
}

fn enroll(s: &dyn Store, token: &str, n: u8) -> EnrollOutcome {
    if !s.enroll_tokens().expect("tokens").iter().any(|t| t.id == token) {
        let t = EnrollToken {
            id: token.into(),
            site: Some("store-042".into()),
            tags: vec!["beta".into()],
            created_at: 10,
            expires_at: None,
            used_by: None,
        };
        s.put_enroll_token(&format!("hash-{token}"), &t)
            .expect("put token");
    }
    s.enroll(&format!("hash-{token}"), &new_device(n), 100)
        .expect("enroll")
}

fn tokens(s: &dyn Store) {
    let t = ApiToken {
        id: "tok1".into(),
        name: "ci".into(),
        role: Role::Operator,
        created_at: 5,
    };
    s.put_api_token("h1", &t).expect("put");
    assert_eq!(s.api_token("h1").expect("get"), Some(t.clone()));
    assert_eq!(s.api_token("nope").expect("get"), None);
    assert!(
        s.put_api_token("h1", &t).is_err(),
        "duplicate token hash accepted"
    );
    assert_eq!(s.api_tokens().expect("list"), vec![t]);
    assert!(s.revoke_api_token("tok1").expect("revoke"));
    assert_eq!(s.api_token("h1").expect("get"), None);
    assert!(!s.revoke_api_token("tok1").expect("revoke twice"));
}

fn enrollment_is_one_time(s: &dyn Store) {
    let EnrollOutcome::Enrolled(d) = enroll(s, "t1", 1) else {
        panic!("first enrollment refused")
    };
    assert_eq!(
        (d.site.as_deref(), d.tags.clone()),
        (Some("store-042"), vec!["beta".to_string()])
    );
    assert_eq!(d.enrolled_at, 100);
    // the same device retrying with the same token (lost response) is idempotent
    assert!(matches!(enroll(s, "t1", 1), EnrollOutcome::Enrolled(_)));
    // another device cannot reuse the token
    assert_eq!(enroll(s, "t1", 2), EnrollOutcome::BadToken);
    // an unknown token is refused
    assert_eq!(
        s.enroll("hash-unknown", &new_device(3), 100).expect("enroll"),
        EnrollOutcome::BadToken
    );
    // a second token for an enrolled key is a conflict, not a second device
    assert_eq!(enroll(s, "t2", 1), EnrollOutcome::KeyConflict);
    assert_eq!(s.devices().expect("devices").len(), 1);
    let used = s.enroll_tokens().expect("tokens");
    assert_eq!(
        used.iter().find(|t| t.id == "t1").and_then(|t| t.used_by.clone()),
        Some(dev_id(1))
    );
    // an expired token is refused
    let t = EnrollToken {
        id: "old".into(),
        site: None,
        tags: vec![],
        created_at: 1,
        expires_at: Some(50),
        used_by: None,
    };
    s.put_enroll_token("hash-old", &t).expect("put");
    assert_eq!(
        s.enroll("hash-old", &new_device(4), 100).expect("enroll"),
        EnrollOutcome::BadToken
    );
}

fn report(at: u64) -> Report {
    let slot = |v: &str| SlotReport {
        version: Some(v.into()),
        image_sha256: None,
        bootable: true,
        successful: true,
    };
    Report {
        at,
        agent_version: "0.1.0".into(),
        product: "kiosk".into(),
        hardware_class: "pos-x86".into(),
        active: Slot::A,
        slot_a: slot("1.0.0"),
        slot_b: slot("0.9.0"),
        state: AgentState::Committed {
            version: "1.0.0".into(),
        },
        last_error: None,
        health: None,
    }
}

fn ingest_refuses_replays(s: &dyn Store) {
    enroll(s, "t1", 1);
    let id = dev_id(1);
    let msg = Ingest::Report(Box::new(report(7)));
    assert!(s.ingest(&id, Kind::Report, 5, &msg, 200).expect("ingest"));
    assert!(
        !s.ingest(&id, Kind::Report, 5, &msg, 201).expect("replay"),
        "same seq accepted twice"
    );
    assert!(
        !s.ingest(&id, Kind::Report, 4, &msg, 202).expect("stale"),
        "stale seq accepted"
    );
    let d = s.device(&id).expect("get").expect("device");
    assert_eq!(
        (d.last_seen, d.online, d.report.map(|r| r.at)),
        (200, true, Some(7))
    );
    // sequences are per kind
    let ev = DeviceEvent {
        device: id.clone(),
        seq: 1,
        at: 3,
        rollout: Some("r1".into()),
        from: "trial".into(),
        to: "committed".into(),
        reason: None,
    };
    assert!(
        s.ingest(&id, Kind::Event, 1, &Ingest::Event(ev.clone()), 210)
            .expect("event")
    );
    assert!(
        s.ingest(&id, Kind::Presence, 1, &Ingest::Presence { online: false }, 220)
            .expect("presence")
    );
    assert!(!s.device(&id).expect("get").expect("device").online);
    assert_eq!(s.device_counts().expect("counts"), (1, 0));
    assert_eq!(s.device_events(&id, 10).expect("events"), vec![ev]);
    let mut seqs = s.sequences().expect("seqs");
    seqs.sort_by_key(|(_, k, _)| format!("{k:?}"));
    assert_eq!(
        seqs,
        vec![
            (id.clone(), Kind::Event, 1),
            (id.clone(), Kind::Presence, 1),
            (id.clone(), Kind::Report, 5)
        ]
    );
    // messages for unknown devices are errors and leave no sequence behind
    assert!(s.ingest(&dev_id(9), Kind::Report, 1, &msg, 1).is_err());
    assert_eq!(s.sequences().expect("seqs").len(), 3);
}

fn ingest_batch_isolates_failures(s: &dyn Store) {
    enroll(s, "t1", 1);
    enroll(s, "t2", 2);
    let item = |n: u8, seq: u64| IngestItem {
        device: dev_id(n),
        kind: Kind::Report,
        seq,
        msg: Ingest::Report(Box::new(report(seq))),
    };
    // out of device order, one unknown device, one replay inside the batch
    let batch = [item(2, 1), item(9, 1), item(1, 3), item(1, 2), item(2, 2)];
    let out = s.ingest_batch(&batch, 300).expect("batch");
    let flat: Vec<Option<bool>> = out.iter().map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(flat, vec![Some(true), None, Some(true), Some(false), Some(true)]);
    let at = |n| {
        s.device(&dev_id(n))
            .expect("get")
            .and_then(|d| d.report)
            .map(|r| r.at)
    };
    assert_eq!((at(1), at(2)), (Some(3), Some(2)));
    assert_eq!(s.sequences().expect("seqs").len(), 2);
}

fn sites_round_trip(s: &dyn Store) {
    let site = Site {
        name: "store-042".into(),
        tz: "Europe/Berlin".into(),
        windows: vec![WindowSpec {
            days: vec!["mon".into()],
            start: "22:00".into(),
            end: "04:00".into(),
        }],
        max_concurrent: Some(2),
    };
    s.put_site(&site).expect("put");
    assert_eq!(s.sites().expect("list"), vec![site.clone()]);
    let changed = Site {
        max_concurrent: None,
        ..site
    };
    s.put_site(&changed).expect("update");
    assert_eq!(s.sites().expect("list"), vec![changed]);
    assert!(s.delete_site("store-042").expect("delete"));
    assert!(s.sites().expect("list").is_empty());
}

fn release(v: &str) -> Release {
    Release {
        version: v.into(),
        product: "kiosk".into(),
        security_version: 1,
        bundle_sha256: "aa".repeat(32),
        bundle_size: 10,
        image_sha256: "bb".repeat(32),
        image_size: 20,
        created_at: 1,
    }
}

fn releases_and_quarantine(s: &dyn Store) {
    s.put_release(&release("1.0.0")).expect("put");
    assert!(matches!(
        s.put_release(&release("1.0.0")),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.release("1.0.0").expect("get"), Some(release("1.0.0")));
    assert_eq!(s.releases().expect("list").len(), 1);
    let q = Quarantine {
        version: "1.0.0".into(),
        hardware_class: "pos-arm".into(),
        reason: "reverted".into(),
        at: 9,
    };
    s.put_quarantine(&q).expect("quarantine");
    s.put_quarantine(&q).expect("quarantine twice is fine");
    assert_eq!(s.quarantines().expect("list"), vec![q]);
    assert!(s.lift_quarantine("1.0.0", "pos-arm").expect("lift"));
    assert!(s.quarantines().expect("list").is_empty());
    let d = Delta {
        source_sha256: "cc".repeat(32),
        version: "1.0.0".into(),
        artifact_sha256: "dd".repeat(32),
        size: 3,
    };
    s.put_delta(&d).expect("delta");
    assert_eq!(s.deltas("1.0.0").expect("deltas"), vec![d]);
}

fn desired(n: u8, seq: u64) -> DesiredRecord {
    DesiredRecord {
        device: dev_id(n),
        seq,
        rollout: Some("r1".into()),
        envelope: format!("env-{seq}"),
    }
}

fn commit_step_is_atomic(s: &dyn Store) {
    let r = Rollout {
        id: "r1".into(),
        version: "1.0.0".into(),
        selector: "hw=pos-x86".into(),
        status: "running".into(),
        spec: serde_json::json!({"waves": 3}),
        state: serde_json::json!({"wave": 0}),
        created_at: 1,
        updated_at: 1,
    };
    s.put_rollout(&r).expect("put");
    assert!(s.put_rollout(&r).is_err(), "duplicate rollout id accepted");
    let decision = Decision {
        rollout: "r1".into(),
        at: 5,
        kind: "wave_started".into(),
        message: "wave 1 started".into(),
    };
    let step = StepCommit {
        status: "running".into(),
        state: serde_json::json!({"wave": 1}),
        decisions: vec![decision.clone()],
        desired: vec![desired(1, 1), desired(2, 1)],
        quarantines: vec![],
        ..StepCommit::default()
    };
    let before = s.rollout_with_rev("r1").expect("rev").expect("rollout").1;
    let rev = s.commit_step("r1", &step, 5).expect("commit");
    assert!(rev > before, "the commit's revision {rev} is not above {before}");
    assert_eq!(
        s.rollout_with_rev("r1")
            .expect("get")
            .map(|(r, rev)| (r.state, r.updated_at, rev)),
        Some((serde_json::json!({"wave": 1}), 5, rev)),
        "commit_step returns the revision the row now has"
    );
    assert_eq!(s.desired_seq(&dev_id(1)).expect("seq"), 1);
    // a step whose desired sequence goes backwards fails as a whole: nothing of it is applied
    let bad = StepCommit {
        status: "paused".into(),
        state: serde_json::json!({"wave": 2}),
        decisions: vec![Decision {
            message: "never".into(),
            ..decision.clone()
        }],
        desired: vec![desired(3, 1), desired(1, 1)],
        quarantines: vec![Quarantine {
            version: "1.0.0".into(),
            hardware_class: "x".into(),
            reason: "r".into(),
            at: 6,
        }],
        ..StepCommit::default()
    };
    assert!(s.commit_step("r1", &bad, 6).is_err());
    let after = s.rollout("r1").expect("get").expect("rollout");
    assert_eq!(
        (after.status.as_str(), after.state),
        ("running", serde_json::json!({"wave": 1}))
    );
    assert_eq!(s.decisions("r1").expect("decisions"), vec![decision]);
    assert_eq!(s.desired(&dev_id(3)).expect("desired"), None);
    assert!(s.quarantines().expect("q").is_empty());
    assert_eq!(s.all_desired().expect("all").len(), 2);
    assert!(matches!(
        s.commit_step("nope", &step, 7),
        Err(StoreError::NotFound { .. })
    ));
}

fn audit_and_meta(s: &dyn Store) {
    for i in 0..5 {
        let e = AuditEntry {
            at: i,
            actor: "admin".into(),
            action: "rollout.pause".into(),
            target: format!("r{i}"),
            detail: String::new(),
        };
        s.audit(&e).expect("audit");
    }
    let last = s.audit_log(2).expect("log");
    assert_eq!(
        last.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        vec!["r3", "r4"]
    );
    assert_eq!(s.meta("missing").expect("meta"), None);
    s.put_meta("server_key", "pem").expect("put");
    s.put_meta("server_key", "pem2").expect("overwrite");
    assert_eq!(s.meta("server_key").expect("meta").as_deref(), Some("pem2"));
}

fn broker_credentials(s: &dyn Store) {
    assert_eq!(s.broker_credential(&dev_id(1)).expect("read"), None);
    s.put_broker_credential(&dev_id(2), "$7$101$b$h2", 1)
        .expect("put");
    s.put_broker_credential(&dev_id(1), "$7$101$a$h1", 1)
        .expect("put");
    s.put_broker_credential(&dev_id(1), "$7$101$a$h1b", 2)
        .expect("replace");
    assert_eq!(
        s.broker_credential(&dev_id(1)).expect("read").as_deref(),
        Some("$7$101$a$h1b")
    );
    assert_eq!(
        s.broker_credentials().expect("all"),
        vec![
            (dev_id(1), "$7$101$a$h1b".to_string()),
            (dev_id(2), "$7$101$b$h2".to_string())
        ]
    );
}
