//! Conformance checks for the replay rules of device messages: `event`s are history kept by
//! (device, seq), so late ones are stored and listed in seq order, while an exact duplicate and one
//! older than `EVENT_WINDOW` are refused; `report` and `presence` stay newest-wins.

use halyard_protocol::{DeviceId, Kind};
use halyard_server::model::DeviceEvent;
use halyard_server::store::{EVENT_WINDOW, Ingest, IngestItem, Store};

use super::{dev_id, enroll, report};

fn event(id: &DeviceId, seq: u64) -> DeviceEvent {
    DeviceEvent {
        device: id.clone(),
        seq,
        at: seq as i64,
        rollout: Some("r1".into()),
        from: "downloading".into(),
        to: format!("step-{seq}"),
        reason: None,
    }
}

/// Ingests event `seq` of `id`; whether it was stored.
fn send(s: &dyn Store, id: &DeviceId, seq: u64) -> bool {
    s.ingest(id, Kind::Event, seq, &Ingest::Event(event(id, seq)), 500)
        .expect("ingest event")
}

fn stored(s: &dyn Store, id: &DeviceId, limit: u32) -> Vec<u64> {
    let events = s.device_events(id, limit).expect("events");
    for e in &events {
        assert_eq!(e, &event(id, e.seq), "event {} stored as sent", e.seq);
    }
    events.iter().map(|e| e.seq).collect()
}

fn event_seq(s: &dyn Store, id: &DeviceId) -> Option<u64> {
    let seqs = s.sequences().expect("sequences");
    seqs.into_iter()
        .find(|(d, k, _)| d == id && *k == Kind::Event)
        .map(|(_, _, seq)| seq)
}

pub(super) fn out_of_order_events_are_kept(s: &dyn Store) {
    enroll(s, "t1", 1);
    let id = dev_id(1);
    for seq in [5, 3, 4, 10, 7] {
        assert!(send(s, &id, seq), "event {seq} refused");
    }
    assert_eq!(stored(s, &id, 10), vec![3, 4, 5, 7, 10], "listed in seq order");
    assert_eq!(stored(s, &id, 2), vec![7, 10], "the newest two");
    assert_eq!(
        event_seq(s, &id),
        Some(10),
        "the high-water mark stays the highest"
    );
    assert_eq!(s.device(&id).expect("get").expect("device").last_seen, 500);
}

pub(super) fn duplicate_events_are_refused(s: &dyn Store) {
    enroll(s, "t1", 1);
    let id = dev_id(1);
    assert!(send(s, &id, 5));
    assert!(!send(s, &id, 5), "the newest event accepted twice");
    assert!(send(s, &id, 3));
    assert!(!send(s, &id, 3), "a late event accepted twice");
    // twice in one batch (two replicas' copies), beside a fresh one
    let item = |seq| IngestItem {
        device: id.clone(),
        kind: Kind::Event,
        seq,
        msg: Ingest::Event(event(&id, seq)),
    };
    let out = s.ingest_batch(&[item(4), item(4), item(5)], 600).expect("batch");
    let flat: Vec<Option<bool>> = out.iter().map(|r| r.as_ref().ok().copied()).collect();
    assert_eq!(flat, vec![Some(true), Some(false), Some(false)]);
    assert_eq!(stored(s, &id, 10), vec![3, 4, 5]);
}

pub(super) fn events_older_than_the_window_are_refused(s: &dyn Store) {
    enroll(s, "t1", 1);
    let id = dev_id(1);
    let top = 5000;
    assert!(send(s, &id, top));
    assert!(
        !send(s, &id, top - EVENT_WINDOW),
        "an event a whole window old accepted"
    );
    assert!(!send(s, &id, 1), "an ancient event accepted");
    assert!(
        send(s, &id, top - EVENT_WINDOW + 1),
        "the oldest event inside the window refused"
    );
    assert_eq!(stored(s, &id, 10), vec![top - EVENT_WINDOW + 1, top]);
    // an event for an unknown device is an error and leaves nothing behind
    assert!(
        s.ingest(
            &dev_id(9),
            Kind::Event,
            1,
            &Ingest::Event(event(&dev_id(9), 1)),
            1
        )
        .is_err()
    );
    assert!(stored(s, &dev_id(9), 10).is_empty());
    assert_eq!(event_seq(s, &dev_id(9)), None);
}

pub(super) fn reports_and_presence_stay_newest_wins(s: &dyn Store) {
    enroll(s, "t1", 1);
    let id = dev_id(1);
    let rep = |at| Ingest::Report(Box::new(report(at)));
    assert!(s.ingest(&id, Kind::Report, 5, &rep(5), 200).expect("report"));
    // 4 was never stored, but a report older than the stored one is stale all the same
    assert!(!s.ingest(&id, Kind::Report, 4, &rep(4), 201).expect("late report"));
    assert!(
        !s.ingest(&id, Kind::Report, 5, &rep(6), 202)
            .expect("duplicate report")
    );
    let d = s.device(&id).expect("get").expect("device");
    assert_eq!((d.report.map(|r| r.at), d.last_seen), (Some(5), 200));
    let presence = |online| Ingest::Presence { online };
    assert!(
        s.ingest(&id, Kind::Presence, 8, &presence(false), 210)
            .expect("offline")
    );
    assert!(
        !s.ingest(&id, Kind::Presence, 7, &presence(true), 211)
            .expect("late online")
    );
    assert!(
        !s.device(&id).expect("get").expect("device").online,
        "a late online won"
    );
}

/// A database written by schema 2 (events behind a high-water mark, listed by insertion) opens at the
/// current schema with its events, listed by seq.
#[test]
fn sqlite_schema_2_events_survive_the_migration() {
    use halyard_server::store::{migrations, sqlite::SqliteStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    let id = dev_id(1);
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        for sql in &migrations::SQLITE[..2] {
            conn.execute_batch(sql).expect("old schema");
        }
        conn.pragma_update(None, "user_version", 2).expect("version");
        for seq in [2, 1, 2] {
            conn.execute(
                "INSERT INTO events (device, seq, at, rollout, from_state, to_state, reason)
                 VALUES (?1, ?2, ?2, 'r1', 'downloading', 'step-' || ?2, NULL)",
                rusqlite::params![id.as_str(), seq],
            )
            .expect("old event");
        }
    }
    let s = SqliteStore::open(&path).expect("migrate");
    assert_eq!(stored(&s, &id, 10), vec![1, 2]);
}

/// Several batches in one call give each batch the outcomes `ingest_batch` gives it alone, in
/// order, each at its own arrival time; a refusal in one batch costs the others nothing.
pub(super) fn ingest_batches_match_one_batch_at_a_time(s: &dyn Store) {
    enroll(s, "t1", 1);
    enroll(s, "t2", 2);
    let (one, two, stranger) = (dev_id(1), dev_id(2), dev_id(9));
    let item = |id: &DeviceId, seq| IngestItem {
        device: id.clone(),
        kind: Kind::Event,
        seq,
        msg: Ingest::Event(event(id, seq)),
    };
    let flat = |out: Vec<Vec<Result<bool, halyard_server::store::StoreError>>>| -> Vec<Vec<Option<bool>>> {
        out.iter()
            .map(|b| b.iter().map(|r| r.as_ref().ok().copied()).collect())
            .collect()
    };
    // All clean: each batch at its own time.
    let clean = vec![
        (vec![item(&one, 2), item(&one, 3)], 100),
        (vec![item(&two, 1)], 200),
    ];
    assert_eq!(
        flat(s.ingest_batches(&clean).expect("batches")),
        vec![vec![Some(true), Some(true)], vec![Some(true)]]
    );
    let seen = |id: &DeviceId| s.device(id).expect("get").expect("enrolled").last_seen;
    assert_eq!((seen(&one), seen(&two)), (100, 200));
    // A replay across batches and a stranger inside one.
    let mixed = vec![
        (vec![item(&one, 3), item(&stranger, 1), item(&one, 4)], 300),
        (vec![item(&one, 4), item(&two, 2)], 250),
    ];
    assert_eq!(
        flat(s.ingest_batches(&mixed).expect("batches")),
        vec![vec![Some(false), None, Some(true)], vec![Some(false), Some(true)]]
    );
    assert_eq!(stored(s, &one, 10), vec![2, 3, 4]);
    assert_eq!(stored(s, &two, 10), vec![1, 2]);
    assert_eq!((seen(&one), seen(&two)), (300, 250));
    assert!(stored(s, &stranger, 10).is_empty());
}
