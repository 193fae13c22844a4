//! The slot writer: streams, verifies by reading back, and names the slot and path when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;

use halyard_hardware::Slot;
use halyard_hardware::block::MemDevice;
use halyard_hardware::block::faulty::{FaultyDevice, PowerRail};
use halyard_hardware::block::file::FileDevice;
use halyard_hardware::block::slot_writer::{DEFAULT_CHUNK, hash_prefix, write_slot};
use halyard_hardware::error::BlockError;
use sha2::{Digest, Sha256};

fn image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[test]
fn writes_and_verifies_a_file_slot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slot_b.img");
    let mut dev = FileDevice::create(&path, 3 << 20).unwrap();
    let data = image((1 << 20) + 12345);
    let report = write_slot(&mut dev, Slot::B, data.as_slice(), &sha(&data), DEFAULT_CHUNK).unwrap();
    assert_eq!((report.bytes, report.sha256), (data.len() as u64, sha(&data)));
    assert_eq!(&std::fs::read(&path).unwrap()[..data.len()], data.as_slice());
    assert_eq!(hash_prefix(&mut dev, 1000).unwrap(), sha(&data[..1000]));
    assert_eq!(hash_prefix(&mut dev, 0).unwrap(), sha(b""));
}

#[test]
fn rejects_an_image_larger_than_the_slot() {
    let mut dev = MemDevice::new("slot-a", 4096);
    let data = image(5000);
    let err = write_slot(&mut dev, Slot::A, data.as_slice(), &sha(&data), 1024).unwrap_err();
    assert!(
        matches!(
            err,
            BlockError::ImageTooLarge {
                slot: Slot::A,
                capacity: 4096,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("slot A on slot-a"), "{err}");
}

#[test]
fn a_wrong_stream_hash_is_reported_as_stream() {
    let mut dev = MemDevice::new("slot-b", 8192);
    let data = image(6000);
    let err = write_slot(&mut dev, Slot::B, data.as_slice(), &[0; 32], 1024).unwrap_err();
    assert!(
        matches!(
            err,
            BlockError::HashMismatch {
                stage: "stream",
                slot: Slot::B,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_bit_flipped_on_the_medium_is_caught_by_the_readback() {
    let data = image(6000);
    let mut dev = FaultyDevice::new(MemDevice::new("slot-b", 8192), PowerRail::always_on()).flip_bit(4321, 3);
    let err = write_slot(&mut dev, Slot::B, data.as_slice(), &sha(&data), 1024).unwrap_err();
    assert!(
        matches!(
            err,
            BlockError::HashMismatch {
                stage: "readback",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn device_errors_and_source_errors_propagate() {
    let data = image(6000);
    let mut dev =
        FaultyDevice::new(MemDevice::new("slot-b", 8192), PowerRail::always_on()).eio_on_writes_after(2);
    let err = write_slot(&mut dev, Slot::B, data.as_slice(), &sha(&data), 1024).unwrap_err();
    assert!(
        matches!(
            err,
            BlockError::Io {
                op: "write",
                offset: 2048,
                ..
            }
        ),
        "{err}"
    );

    let mut dev =
        FaultyDevice::new(MemDevice::new("slot-b", 8192), PowerRail::always_on()).no_space_beyond(4096);
    let err = write_slot(&mut dev, Slot::B, data.as_slice(), &sha(&data), 1024).unwrap_err();
    assert!(
        matches!(err, BlockError::Io { ref source, .. } if source.raw_os_error() == Some(28)),
        "{err}"
    );

    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("network gone"));
            }
            let n = buf.len().min(self.0).min(700);
            self.0 -= n;
            Ok(n)
        }
    }
    let mut dev = MemDevice::new("slot-b", 8192);
    let err = write_slot(&mut dev, Slot::B, Broken(2100), &[0; 32], 1024).unwrap_err();
    assert!(matches!(err, BlockError::Source { offset: 2048, .. }), "{err}");
}
