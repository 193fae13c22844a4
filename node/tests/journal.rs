//! The journal under power cuts: at every crash point of a write the old or the new record reads back,
//! torn files are recovered into `Failed`, and a missing journal is a first start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use halyard_node::faults::{CrashPoints, NoCrash, PowerLost};
use halyard_node::fsm::table::sample_states;
use halyard_node::fsm::{Image, State};
use halyard_node::journal::{Journal, JournalError, Loaded, Record};
use halyard_protocol::{Sha256, Slot};

/// Cuts the power at the `n`-th crash point reached (0-based), and at every one after it.
#[derive(Debug)]
struct CutAt {
    n: u64,
    seen: AtomicU64,
}

impl CrashPoints for CutAt {
    fn reach(&self, point: &'static str) -> Result<(), PowerLost> {
        if self.seen.fetch_add(1, Ordering::SeqCst) >= self.n {
            return Err(PowerLost { point });
        }
        Ok(())
    }
}

fn image(v: &str) -> Image {
    Image {
        version: v.into(),
        size: 10,
        sha256: Sha256::of(v.as_bytes()),
    }
}

fn fresh() -> Record {
    Record::fresh(Slot::A, image("1.0.0"))
}

#[test]
fn missing_is_fresh_and_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::new(dir.path(), Arc::new(NoCrash));
    assert_eq!(journal.load_or_recover(fresh).unwrap(), Loaded::Fresh(fresh()));
    for state in sample_states() {
        let record = fresh().with_state(state);
        journal.store(&record).unwrap();
        assert_eq!(journal.load().unwrap(), Some(record));
    }
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(journal.path()).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_cut_at_every_crash_point_leaves_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let old = fresh();
    let new = fresh().with_state(sample_states()[3].clone());
    let mut cuts = 0;
    for n in 0.. {
        Journal::new(dir.path(), Arc::new(NoCrash)).store(&old).unwrap();
        let crash = Arc::new(CutAt {
            n,
            seen: AtomicU64::new(0),
        });
        let result = Journal::new(dir.path(), crash).store(&new);
        let after = Journal::new(dir.path(), Arc::new(NoCrash))
            .load()
            .unwrap()
            .unwrap();
        if result.is_ok() {
            assert_eq!(after, new);
            break;
        }
        cuts += 1;
        assert!(after == old || after == new, "cut {n}: {after:?}");
        // The next write after the "reboot" works over any leftover temp file.
        Journal::new(dir.path(), Arc::new(NoCrash)).store(&new).unwrap();
    }
    assert_eq!(cuts, 5, "create, torn tail, fsync, rename, fsync dir");
}

#[test]
fn torn_or_foreign_journals_are_recovered_into_failed() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::new(dir.path(), Arc::new(NoCrash));
    let record = fresh().with_state(sample_states()[1].clone());
    journal.store(&record).unwrap();
    let bytes = std::fs::read(journal.path()).unwrap();
    for len in (0..bytes.len()).step_by(7) {
        std::fs::write(journal.path(), &bytes[..len]).unwrap();
        assert!(
            matches!(journal.load(), Err(JournalError::Corrupt { .. })),
            "prefix {len} parsed"
        );
        let loaded = journal.load_or_recover(fresh).unwrap();
        let Loaded::Recovered(rec) = loaded else {
            panic!("{loaded:?}")
        };
        assert!(matches!(&rec.state, State::Failed { reason, .. } if reason.contains("journal unreadable")));
        assert_eq!(rec.images, fresh().images);
        assert_eq!(
            std::fs::read(journal.path().with_extension("json.corrupt")).unwrap(),
            &bytes[..len]
        );
        assert!(journal.load().unwrap().is_none(), "moved aside");
    }
    let text = String::from_utf8(bytes)
        .unwrap()
        .replace("\"format\": 1", "\"format\": 9");
    std::fs::write(journal.path(), text).unwrap();
    let err = journal.load().unwrap_err().to_string();
    assert!(err.contains("format 9"), "{err}");
}

#[test]
fn commits_raise_the_floor_and_installs_forget_the_slot() {
    let states = sample_states();
    let installing = fresh().with_state(states[2].clone());
    assert_eq!(installing.images.get(Slot::B), None);
    let committed = installing.with_state(states[7].clone());
    assert_eq!(committed.security_floor, 2);
    assert_eq!(committed.images.get(Slot::B).unwrap().version, "2.0.0");
    assert_eq!(committed.with_state(State::Idle).security_floor, 2);
}
