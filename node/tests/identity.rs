//! The device identity: created once with mode 0600, stable across restarts, and sequence numbers that
//! never repeat even when a power cut hits a counter write.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use halyard_node::faults::{CrashPoints, NoCrash, PowerLost};
use halyard_node::identity::{Identity, KEY_FILE, SEQ_BLOCK, SeqCounter};
use halyard_protocol::{DeviceId, Envelope, Presence};

#[derive(Debug)]
struct CutAt(u64, AtomicU64);

impl CrashPoints for CutAt {
    fn reach(&self, point: &'static str) -> Result<(), PowerLost> {
        if self.1.fetch_add(1, Ordering::SeqCst) >= self.0 {
            return Err(PowerLost { point });
        }
        Ok(())
    }
}

#[test]
fn key_is_created_once_private_and_signs_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let first = Identity::load_or_create(dir.path(), &NoCrash).unwrap();
    let again = Identity::load_or_create(dir.path(), &NoCrash).unwrap();
    assert_eq!(first.device_id(), again.device_id());
    assert_eq!(first.device_id(), &DeviceId::from_public_key(&first.public_key()));
    let meta = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let pem = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let env = Envelope::seal(
        &Presence { online: true, at: 1 },
        first.device_id(),
        1,
        &again.signing_key(),
    )
    .unwrap();
    env.open::<Presence>(&first.signing_key().verifying_key())
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        Identity::load_or_create(other.path(), &NoCrash)
            .unwrap()
            .device_id(),
        first.device_id()
    );
}

#[test]
fn a_cut_while_creating_the_key_leaves_none_or_a_whole_one() {
    for n in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        assert!(Identity::load_or_create(dir.path(), &CutAt(n, AtomicU64::new(0))).is_err());
        // After the reboot the key loads (if the rename landed) or is created afresh.
        let id = Identity::load_or_create(dir.path(), &NoCrash).unwrap();
        assert_eq!(
            Identity::load_or_create(dir.path(), &NoCrash)
                .unwrap()
                .device_id(),
            id.device_id()
        );
    }
}

#[test]
fn sequence_numbers_never_repeat_across_restarts_and_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = 0;
    for round in 0..20u64 {
        let crash: Arc<dyn CrashPoints> = if round % 3 == 2 {
            Arc::new(CutAt(round % 5, AtomicU64::new(0)))
        } else {
            Arc::new(NoCrash)
        };
        let mut counter = SeqCounter::open(dir.path(), crash).unwrap();
        for _ in 0..(SEQ_BLOCK + 7) {
            match counter.next_seq() {
                Ok(n) => {
                    assert!(n > last, "round {round}: {n} after {last}");
                    last = n;
                }
                Err(_) => break,
            }
        }
    }
    std::fs::write(dir.path().join("seq"), "twelve").unwrap();
    assert!(SeqCounter::open(dir.path(), Arc::new(NoCrash)).is_err());
}
