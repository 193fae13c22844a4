//! A real block device: a loop device over a GPT image, opened with `O_SYNC` and sized by seeking.
//! Needs root and `losetup` (util-linux); without them the test says so and checks nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use halyard_hardware::Slot;
use halyard_hardware::block::BlockDevice;
use halyard_hardware::block::file::FileDevice;
use halyard_hardware::block::gpt::Partition;
use halyard_hardware::block::slot_writer::{hash_prefix, write_slot};
use sha2::{Digest, Sha256};

/// Detaches the loop device when dropped, also when the test panics.
struct Loop(PathBuf);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn attach(image: &std::path::Path) -> Option<Loop> {
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(image)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| Loop(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())))
}

#[test]
fn loop_device_partition_takes_a_verified_slot_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(4 << 20).unwrap();
    let status = Command::new("sgdisk")
        .args([
            "-n", "1:0:+1M", "-c", "1:root_a", "-n", "2:0:+1M", "-c", "2:root_b",
        ])
        .arg(&image)
        .output()
        .expect("sgdisk (Debian package gdisk) is installed");
    assert!(status.status.success());
    let Some(dev) = attach(&image) else {
        println!("skipped: no loop device available (needs root and losetup)");
        return;
    };
    let disk = FileDevice::open_block_device(&dev.0).unwrap();
    assert_eq!(disk.size(), 4 << 20, "size by seek on a block device");
    assert_eq!(disk.backend(), "blockdev");
    let mut part = Partition::open(disk, "root_b").unwrap();
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 241) as u8).collect();
    let digest: [u8; 32] = Sha256::digest(&data).into();
    write_slot(&mut part, Slot::B, data.as_slice(), &digest, 64 * 1024).unwrap();
    assert_eq!(hash_prefix(&mut part, data.len() as u64).unwrap(), digest);
    let start = part.start() as usize;
    drop(part);
    drop(dev);
    let on_disk = std::fs::read(&image).unwrap();
    assert_eq!(
        &on_disk[start..start + data.len()],
        data.as_slice(),
        "O_SYNC writes reached the image"
    );
}
