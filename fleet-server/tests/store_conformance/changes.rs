//! The devices' change feed (`Store::devices_changed`), which the engine's fleet view reads each
//! pass instead of every device row, and the desired sequence numbers it starts from.

use halyard_protocol::Kind;
use halyard_server::model::*;
use halyard_server::store::{Ingest, StepCommit, Store};

use super::{dev_id, enroll, report};

/// The ids a change-feed read returned, sorted.
fn ids(devices: &[Device]) -> Vec<String> {
    let mut v: Vec<_> = devices.iter().map(|d| d.id.to_string()).collect();
    v.sort();
    v
}

/// An event of device `id` with `seq`.
fn event(id: &halyard_protocol::DeviceId, seq: u64) -> DeviceEvent {
    DeviceEvent {
        device: id.clone(),
        seq,
        at: 3,
        rollout: None,
        from: "idle".into(),
        to: "downloading".into(),
        reason: None,
    }
}

/// Every kind of write to a device row shows up in the next read, with the row as written.
pub fn every_device_write_is_in_the_feed(s: &dyn Store) {
    let (none, start) = s.devices_changed(None).expect("empty feed");
    assert!(none.is_empty());
    enroll(s, "t1", 1);
    enroll(s, "t2", 2);
    let (new, mark) = s.devices_changed(Some(start)).expect("after enrollment");
    assert_eq!(ids(&new), ids(&s.devices().expect("devices")));
    let (all, _) = s.devices_changed(None).expect("full read");
    assert_eq!(all.len(), 2, "a read without a mark returns every device");

    let one = dev_id(1);
    let msg = Ingest::Report(Box::new(report(7)));
    assert!(s.ingest(&one, Kind::Report, 1, &msg, 200).expect("report"));
    let (changed, mark) = s.devices_changed(Some(mark)).expect("after a report");
    let got = changed
        .iter()
        .find(|d| d.id == one)
        .expect("reported device in the feed");
    assert_eq!((got.report.as_ref().map(|r| r.at), got.last_seen), (Some(7), 200));

    assert!(
        s.ingest(&one, Kind::Event, 1, &Ingest::Event(event(&one, 1)), 260)
            .expect("event")
    );
    let (changed, mark) = s.devices_changed(Some(mark)).expect("after an event");
    let got = changed
        .iter()
        .find(|d| d.id == one)
        .expect("an event moves last_seen");
    assert_eq!(got.last_seen, 260);

    let presence = Ingest::Presence { online: false };
    assert!(
        s.ingest(&one, Kind::Presence, 1, &presence, 270)
            .expect("presence")
    );
    let (changed, mark) = s.devices_changed(Some(mark)).expect("after presence");
    assert!(
        !changed
            .iter()
            .find(|d| d.id == one)
            .expect("presence in the feed")
            .online
    );

    s.set_device_labels(&dev_id(2), Some("store-7"), &["night".into()])
        .expect("labels");
    let (changed, _) = s.devices_changed(Some(mark)).expect("after labels");
    let got = changed
        .iter()
        .find(|d| d.id == dev_id(2))
        .expect("relabelled device in the feed");
    assert_eq!(got.site.as_deref(), Some("store-7"));
}

/// A replayed message does not touch the device row. (The feed may still repeat the row: only
/// that its content is unchanged is asserted.)
pub fn a_replay_does_not_touch_the_row(s: &dyn Store) {
    enroll(s, "t1", 1);
    let one = dev_id(1);
    let msg = Ingest::Report(Box::new(report(7)));
    assert!(s.ingest(&one, Kind::Report, 5, &msg, 200).expect("report"));
    let (_, mark) = s.devices_changed(None).expect("read");
    assert!(!s.ingest(&one, Kind::Report, 5, &msg, 300).expect("replay"));
    let (changed, _) = s.devices_changed(Some(mark)).expect("after a replay");
    if let Some(d) = changed.iter().find(|d| d.id == one) {
        assert_eq!(d.last_seen, 200, "a replay must not touch the row");
    }
}

/// A message that changes nothing in the row (same time, same presence) is still accepted and
/// kept; a presence change at the same time still changes the row; an unknown device is refused.
pub fn messages_that_change_nothing_are_kept_and_changes_are_not_lost(s: &dyn Store) {
    enroll(s, "t1", 1);
    let one = dev_id(1);
    let online = Ingest::Presence { online: true };
    assert!(s.ingest(&one, Kind::Presence, 1, &online, 200).expect("presence"));
    let ev = |seq: u64| event(&one, seq);
    assert!(
        s.ingest(&one, Kind::Event, 1, &Ingest::Event(ev(1)), 200)
            .expect("event")
    );
    assert!(
        s.ingest(&one, Kind::Event, 2, &Ingest::Event(ev(2)), 150)
            .expect("late event")
    );
    assert!(
        s.ingest(&one, Kind::Presence, 2, &online, 200)
            .expect("same presence")
    );
    let row = s.device(&one).expect("read").expect("device");
    assert_eq!((row.last_seen, row.online), (200, true));
    let seqs: Vec<u64> = s
        .device_events(&one, 10)
        .expect("events")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2], "events that change no row are still history");

    let (_, mark) = s.devices_changed(None).expect("read");
    let offline = Ingest::Presence { online: false };
    assert!(s.ingest(&one, Kind::Presence, 3, &offline, 200).expect("offline"));
    let (changed, _) = s.devices_changed(Some(mark)).expect("after going offline");
    let got = changed
        .iter()
        .find(|d| d.id == one)
        .expect("a presence change is in the feed");
    assert_eq!((got.last_seen, got.online), (200, false));

    let stranger = dev_id(9);
    let refused = s.ingest(&stranger, Kind::Event, 1, &Ingest::Event(ev(1)), 100);
    assert!(
        matches!(refused, Err(halyard_server::store::StoreError::NotFound { .. })),
        "{refused:?}"
    );
    assert!(s.device_events(&stranger, 10).expect("none").is_empty());
}

/// `desired_seqs` answers the engine's one question about desired states: each device's last seq.
pub fn desired_seqs_are_the_last_issued(s: &dyn Store) {
    enroll(s, "t1", 1);
    enroll(s, "t2", 2);
    assert!(s.desired_seqs().expect("none yet").is_empty());
    let rollout = Rollout {
        id: "r1".into(),
        version: "2.0.0".into(),
        selector: "all".into(),
        status: "running".into(),
        spec: serde_json::json!({}),
        state: serde_json::json!({}),
        created_at: 1,
        updated_at: 1,
    };
    s.put_rollout(&rollout).expect("rollout");
    let record = |n: u8, seq: u64| DesiredRecord {
        device: dev_id(n),
        seq,
        rollout: Some("r1".into()),
        envelope: format!("envelope {n} {seq}"),
    };
    for (n, seq) in [(1, 1), (2, 1), (1, 2)] {
        let step = StepCommit {
            status: "running".into(),
            state: serde_json::json!({}),
            desired: vec![record(n, seq)],
            ..StepCommit::default()
        };
        s.commit_step("r1", &step, 10).expect("commit");
    }
    let mut seqs = s.desired_seqs().expect("seqs");
    seqs.sort();
    let mut want = vec![(dev_id(1), 2), (dev_id(2), 1)];
    want.sort();
    assert_eq!(seqs, want);
}

/// A rollout's revision moves with every write of its row, and is read together with the row, so
/// the engine can keep a parsed state while the revision stands.
pub fn rollout_revisions_move_with_every_write(s: &dyn Store) {
    let rollout = |id: &str, at: i64| Rollout {
        id: id.into(),
        version: "2.0.0".into(),
        selector: "all".into(),
        status: "running".into(),
        spec: serde_json::json!({"id": id}),
        state: serde_json::json!({"wave": 0}),
        created_at: at,
        updated_at: at,
    };
    s.put_rollout(&rollout("r2", 2)).expect("r2");
    s.put_rollout(&rollout("r1", 1)).expect("r1");
    let revs = s.rollout_revs().expect("revs");
    let ids: Vec<_> = revs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"], "in the order of rollouts()");
    let (stored, rev) = s.rollout_with_rev("r1").expect("read").expect("r1");
    assert_eq!(stored, rollout("r1", 1));
    assert_eq!(rev, revs[0].rev);
    let step = StepCommit {
        status: "paused".into(),
        state: serde_json::json!({"wave": 1}),
        ..StepCommit::default()
    };
    s.commit_step("r1", &step, 10).expect("commit");
    let after = s.rollout_revs().expect("revs");
    assert!(after[0].rev > rev, "a commit must move the revision");
    assert_eq!((after[0].status.as_str(), after[1].rev), ("paused", revs[1].rev));
    let (stored, rev2) = s.rollout_with_rev("r1").expect("read").expect("r1");
    assert_eq!(
        (stored.state, rev2),
        (serde_json::json!({"wave": 1}), after[0].rev)
    );
    assert!(s.rollout_with_rev("nope").expect("read").is_none());
}
