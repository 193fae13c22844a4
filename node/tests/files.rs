//! Conformance of the agent's record stores: the disk one and the in-memory one (simulated fleets)
//! pass the same tests, including a power cut at every crash point of a replacement, and the journal
//! behaves the same over either.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use halyard_node::faults::{CrashPoints, NoCrash, PowerLost};
use halyard_node::files::{DiskFiles, Files, MemFiles};
use halyard_node::fsm::{Image, State};
use halyard_node::journal::{Journal, Loaded, Record};
use halyard_protocol::{Sha256, Slot};

/// Cuts the power at the `n`th crash point (counting from 0) and records the points reached.
#[derive(Debug, Default)]
struct CutAt {
    n: u64,
    seen: AtomicU64,
    points: std::sync::Mutex<Vec<&'static str>>,
}

impl CutAt {
    fn new(n: u64) -> Self {
        Self { n, ..Self::default() }
    }
}

impl CrashPoints for CutAt {
    fn reach(&self, point: &'static str) -> Result<(), PowerLost> {
        self.points.lock().unwrap().push(point);
        if self.seen.fetch_add(1, Ordering::SeqCst) >= self.n {
            return Err(PowerLost { point });
        }
        Ok(())
    }
}

/// Each store under test, with a directory it may use (the disk one writes there).
fn stores() -> Vec<(&'static str, Arc<dyn Files>, tempfile::TempDir)> {
    vec![
        ("disk", DiskFiles::shared(), tempfile::tempdir().unwrap()),
        ("mem", Arc::new(MemFiles::new()), tempfile::tempdir().unwrap()),
    ]
}

#[test]
fn read_write_remove_and_rename() {
    for (name, files, dir) in stores() {
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        assert_eq!(files.read(&a).unwrap(), None, "{name}");
        files.write_atomic(&a, b"one", 0o600, &NoCrash).unwrap();
        assert_eq!(files.read(&a).unwrap().as_deref(), Some(&b"one"[..]), "{name}");
        files.write_atomic(&a, b"two!", 0o600, &NoCrash).unwrap();
        assert_eq!(files.read(&a).unwrap().as_deref(), Some(&b"two!"[..]), "{name}");
        files.rename(&a, &b).unwrap();
        assert_eq!(files.read(&a).unwrap(), None, "{name}");
        assert_eq!(files.read(&b).unwrap().as_deref(), Some(&b"two!"[..]), "{name}");
        assert!(files.rename(&a, &b).is_err(), "{name}: renaming a missing file");
        files.remove(&b).unwrap();
        files.remove(&b).unwrap();
        assert_eq!(files.read(&b).unwrap(), None, "{name}");
    }
}

#[test]
fn a_cut_at_any_point_leaves_the_old_content_or_the_new() {
    let points = [
        "file.create_temp",
        "file.write_temp_tail",
        "file.fsync_temp",
        "file.rename",
        "file.fsync_dir",
    ];
    for n in 0..points.len() as u64 {
        for (name, files, dir) in stores() {
            let path = dir.path().join("record");
            files.write_atomic(&path, b"old", 0o600, &NoCrash).unwrap();
            let cut = CutAt::new(n);
            assert!(files.write_atomic(&path, b"new content", 0o600, &cut).is_err());
            assert_eq!(*cut.points.lock().unwrap(), points[..=n as usize], "{name}");
            let after = files.read(&path).unwrap().unwrap();
            let renamed = n > 3;
            let expected: &[u8] = if renamed { b"new content" } else { b"old" };
            assert_eq!(after, expected, "{name}: cut at {}", points[n as usize]);
            // The next write after the reboot lands whatever the cut left behind.
            files.write_atomic(&path, b"later", 0o600, &NoCrash).unwrap();
            assert_eq!(files.read(&path).unwrap().unwrap(), b"later", "{name}");
        }
    }
}

fn record(state: State) -> Record {
    let image = Image {
        version: "1.0.0".into(),
        size: 4,
        sha256: Sha256::of(b"abcd"),
    };
    Record::fresh(Slot::A, image).with_state(state)
}

fn journal_in(files: &Arc<dyn Files>, dir: &Path) -> Journal {
    Journal::in_files(files.clone(), dir, Arc::new(NoCrash))
}

#[test]
fn the_journal_round_trips_and_moves_a_corrupt_one_aside_in_either_store() {
    for (name, files, dir) in stores() {
        let journal = journal_in(&files, dir.path());
        assert!(journal.load().unwrap().is_none(), "{name}");
        let idle = record(State::Idle);
        journal.store(&idle).unwrap();
        assert_eq!(journal.load().unwrap(), Some(idle.clone()), "{name}");
        files
            .write_atomic(journal.path(), b"{not json", 0o600, &NoCrash)
            .unwrap();
        let loaded = journal.load_or_recover(|| idle.clone()).unwrap();
        assert!(matches!(loaded, Loaded::Recovered(_)), "{name}: {loaded:?}");
        let aside = journal.path().with_extension("json.corrupt");
        assert_eq!(files.read(&aside).unwrap().unwrap(), b"{not json", "{name}");
        assert_eq!(files.read(journal.path()).unwrap(), None, "{name}");
    }
}
