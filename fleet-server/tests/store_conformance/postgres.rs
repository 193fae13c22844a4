//! The suite against the real PostgreSQL (`HALYARD_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`): each check on its own `halyard_test_<random>`
//! database, dropped afterwards, so parallel tests and other users of the server never collide.
//! If the server is unreachable the tests fail with a clear message, unless `HALYARD_SKIP_POSTGRES=1`.

use std::sync::{Arc, Barrier};

use halyard_protocol::Kind;
use halyard_server::model::*;
use halyard_server::store::postgres::PgStore;
use halyard_server::store::postgres::temp::TempDatabase;
use halyard_server::store::{EnrollOutcome, Fence, Ingest, StepCommit, Store, StoreError};

use super::{dev_id, enroll, new_device, report, run_all};

fn admin_url() -> String {
    std::env::var("HALYARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database, or `None` when PostgreSQL is unreachable and `HALYARD_SKIP_POSTGRES=1`.
fn temp_db() -> Option<TempDatabase> {
    match TempDatabase::create(&admin_url()) {
        Ok(db) => Some(db),
        Err(e) if std::env::var("HALYARD_SKIP_POSTGRES").is_ok_and(|v| v == "1") => {
            eprintln!("skipping: PostgreSQL unreachable ({e}) and HALYARD_SKIP_POSTGRES=1");
            None
        }
        Err(e) => panic!(
            "PostgreSQL at {} is unreachable: {e}\n\
             start it (Debian: apt install postgresql; .ci/run does this), point \
             HALYARD_TEST_DATABASE_URL at one, or set HALYARD_SKIP_POSTGRES=1 to skip",
            admin_url()
        ),
    }
}

fn open(db: &TempDatabase) -> PgStore {
    PgStore::open(db.url(), 4).expect("open the PostgreSQL store")
}

#[test]
fn postgres_passes_the_suite() {
    let Some(first) = temp_db() else { return };
    let dbs = std::cell::RefCell::new(vec![first]);
    let fresh = std::cell::Cell::new(true);
    run_all(|| {
        if !fresh.replace(false) {
            dbs.borrow_mut().push(temp_db().expect("another database"));
        }
        let dbs = dbs.borrow();
        Box::new(open(dbs.last().expect("a database")))
    });
}

#[test]
fn postgres_state_survives_reopen_and_newer_schemas_are_refused() {
    let Some(db) = temp_db() else { return };
    {
        let s = open(&db);
        enroll(&s, "t1", 1);
        s.put_meta("k", "v").expect("meta");
    }
    let s = open(&db);
    assert_eq!(s.devices().expect("devices").len(), 1);
    assert_eq!(s.meta("k").expect("meta").as_deref(), Some("v"));
    drop(s);
    let mut c = postgres::Client::connect(db.url(), postgres::NoTls).expect("connect");
    c.batch_execute("UPDATE schema_version SET version = 999")
        .expect("bump schema");
    match PgStore::open(db.url(), 1) {
        Err(StoreError::SchemaTooNew { found: 999, .. }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

/// Runs `f(i)` on `n` threads released at once; returns their results in thread order.
fn race<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let start = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (f, start) = (f.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                f(i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("thread")).collect()
}

#[test]
fn postgres_migrations_race_safely() {
    let Some(db) = temp_db() else { return };
    let url = db.url().to_owned();
    let opened = race(4, move |_| PgStore::open(&url, 1).map(|_| ()));
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
}

#[test]
fn postgres_concurrent_writers_keep_the_single_writer_guarantees() {
    let Some(db) = temp_db() else { return };
    let s = Arc::new(open(&db));
    enroll(s.as_ref(), "seed", 1);
    // one enrollment token, eight devices (on eight connections across two "replicas")
    let t = EnrollToken {
        id: "shared".into(),
        site: None,
        tags: vec![],
        created_at: 1,
        expires_at: None,
        used_by: None,
    };
    s.put_enroll_token("hash-shared", &t).expect("token");
    let other = Arc::new(open(&db));
    let (a, b) = (s.clone(), other.clone());
    let outcomes = race(8, move |i| {
        let store = if i % 2 == 0 { &a } else { &b };
        store.enroll("hash-shared", &new_device(10 + i as u8), 5)
    });
    let won = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(EnrollOutcome::Enrolled(_))))
        .count();
    assert_eq!(won, 1, "a one-time token enrolled {won} devices: {outcomes:?}");
    // the same signed message delivered to both replicas at once is stored once
    let (a, b) = (s.clone(), other.clone());
    let fresh = race(8, move |i| {
        let store = if i % 2 == 0 { &a } else { &b };
        let msg = Ingest::Report(Box::new(report(9)));
        store.ingest(&dev_id(1), Kind::Report, 7, &msg, 50)
    });
    let stored = fresh.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(stored, 1, "one sequence number stored {stored} times: {fresh:?}");
}

fn rollout() -> Rollout {
    Rollout {
        id: "r1".into(),
        version: "1.0.0".into(),
        selector: "all".into(),
        status: "running".into(),
        spec: serde_json::json!({}),
        state: serde_json::json!({"wave": 0}),
        created_at: 1,
        updated_at: 1,
    }
}

fn step(wave: u64, fence: Fence) -> StepCommit {
    StepCommit {
        status: "running".into(),
        state: serde_json::json!({ "wave": wave }),
        decisions: vec![Decision {
            rollout: "r1".into(),
            at: wave as i64,
            kind: "wave_started".into(),
            message: format!("wave {wave} started"),
        }],
        fence,
        ..StepCommit::default()
    }
}

#[test]
fn postgres_lease_fences_a_deposed_leader() {
    let Some(db) = temp_db() else { return };
    let s = open(&db);
    s.put_rollout(&rollout()).expect("rollout");
    assert_eq!(s.engine_lease("a", 60_000).expect("lease"), Some(1));
    assert_eq!(s.engine_lease("b", 60_000).expect("lease"), None, "b must wait");
    assert_eq!(s.engine_lease("a", 60_000).expect("renew"), Some(1));
    // `prior` is the row's revision the step was computed from: 0 as put, 1 after one commit
    let fenced = |epoch: u64, prior: i64| Fence {
        epoch: Some(epoch),
        prior_rev: Some(prior),
    };
    s.commit_step("r1", &step(1, fenced(1, 0)), 2)
        .expect("leader commits");
    // a's lease runs out (a stalled); b takes over with a new epoch
    let mut c = postgres::Client::connect(db.url(), postgres::NoTls).expect("connect");
    c.batch_execute("UPDATE leases SET expires_ms = 0")
        .expect("expire");
    assert_eq!(s.engine_lease("b", 60_000).expect("lease"), Some(2));
    assert_eq!(s.engine_lease("a", 60_000).expect("lease"), None);
    // the deposed leader's step, computed from the current state, is refused by the epoch
    let late = s.commit_step("r1", &step(2, fenced(1, 1)), 3);
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    // a step computed from a stale state is refused even under the current epoch
    let stale = s.commit_step("r1", &step(2, fenced(2, 0)), 3);
    assert!(matches!(stale, Err(StoreError::Fenced { .. })), "{stale:?}");
    s.commit_step("r1", &step(2, fenced(2, 1)), 4)
        .expect("new leader commits");
    let waves: Vec<String> = s
        .decisions("r1")
        .expect("decisions")
        .into_iter()
        .map(|d| d.message)
        .collect();
    assert_eq!(waves, vec!["wave 1 started", "wave 2 started"]);
    // a graceful stop hands over at once
    s.release_engine_lease("b").expect("release");
    assert_eq!(s.engine_lease("a", 60_000).expect("lease"), Some(3));
}

/// The change feed's hard case on a shared database: a write whose transaction is still open when
/// the engine reads commits afterwards, with a transaction id below the read's own. The next read
/// from the mark that read returned must still see it.
#[test]
fn postgres_change_feed_sees_a_write_that_commits_after_the_read() {
    let Some(db) = temp_db() else { return };
    let s = open(&db);
    enroll(&s, "t1", 1);
    enroll(&s, "t2", 2);
    let (_, mark) = s.devices_changed(None).expect("first read");
    let mut c = postgres::Client::connect(db.url(), postgres::NoTls).expect("connect");
    let mut slow = c.transaction().expect("begin");
    slow.execute(
        "UPDATE devices SET last_seen = 999 WHERE id = $1",
        &[&dev_id(1).as_str()],
    )
    .expect("slow write");
    // a later, faster writer commits first
    s.set_device_labels(&dev_id(2), Some("store-7"), &[])
        .expect("labels");
    let (changed, next) = s
        .devices_changed(Some(mark))
        .expect("read while the slow write is open");
    assert!(changed.iter().any(|d| d.id == dev_id(2)));
    assert!(
        changed.iter().all(|d| d.last_seen != 999),
        "uncommitted write visible"
    );
    slow.commit().expect("commit the slow write");
    let (changed, _) = s.devices_changed(Some(next)).expect("read after it committed");
    let got = changed
        .iter()
        .find(|d| d.id == dev_id(1))
        .expect("the write that committed late is in the feed");
    assert_eq!(got.last_seen, 999);
}
