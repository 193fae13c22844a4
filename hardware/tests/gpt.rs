//! GPT partitions as block devices, against disk images made by the real `sgdisk` (gdisk) and
//! `sfdisk` (fdisk): names and sector ranges must match what the tools report, writes must stay
//! inside the partition, and a damaged primary table falls back to the backup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use halyard_hardware::BlockError;
use halyard_hardware::Slot;
use halyard_hardware::block::BlockDevice;
use halyard_hardware::block::file::FileDevice;
use halyard_hardware::block::gpt::{GptTable, Partition};
use halyard_hardware::block::slot_writer::write_slot;
use sha2::{Digest, Sha256};

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed (Debian packages gdisk, fdisk): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// An 8 MiB image partitioned by sgdisk like a Halyard disk: boot, root_a, root_b, data.
fn sgdisk_image(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("disk.img");
    std::fs::File::create(&path).unwrap().set_len(8 << 20).unwrap();
    let p = path.to_str().unwrap();
    run(
        "sgdisk",
        &[
            "-n",
            "1:2048:+1M",
            "-c",
            "1:boot",
            "-n",
            "2:0:+2M",
            "-c",
            "2:root_a",
            "-n",
            "3:0:+2M",
            "-c",
            "3:root_b",
            "-n",
            "4:0:0",
            "-c",
            "4:data",
            p,
        ],
        None,
    );
    path
}

/// (first, last) sector of partition `n` as `sgdisk -i` reports it.
fn sgdisk_range(path: &Path, n: u32) -> (u64, u64) {
    let info = run("sgdisk", &["-i", &n.to_string(), path.to_str().unwrap()], None);
    let field = |name: &str| -> u64 {
        let line = info.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("First sector:"), field("Last sector:"))
}

#[test]
fn reads_the_table_sgdisk_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let path = sgdisk_image(dir.path());
    let table = GptTable::read(&mut FileDevice::open(&path).unwrap()).unwrap();
    assert!(!table.from_backup);
    assert_eq!(table.sector_size, 512);
    let names: Vec<&str> = table.partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["boot", "root_a", "root_b", "data"]);
    for part in &table.partitions {
        assert_eq!(
            (part.first_lba, part.last_lba),
            sgdisk_range(&path, part.number),
            "{}",
            part.name
        );
    }
}

#[test]
fn partition_writes_land_inside_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = sgdisk_image(dir.path());
    let (first, last) = sgdisk_range(&path, 3);
    let mut part = Partition::open(FileDevice::open(&path).unwrap(), "root_b").unwrap();
    assert_eq!(part.size(), (last - first + 1) * 512);
    assert!(part.location().to_string_lossy().ends_with("disk.img#root_b"));
    let image: Vec<u8> = (0..part.size()).map(|i| (i % 251) as u8).collect();
    let digest: [u8; 32] = Sha256::digest(&image).into();
    write_slot(&mut part, Slot::B, image.as_slice(), &digest, 64 * 1024).unwrap();
    let err = part.write_at(part.size() - 1, b"xy").unwrap_err();
    assert!(matches!(err, BlockError::OutOfRange { .. }), "{err}");
    let disk = std::fs::read(&path).unwrap();
    let (start, end) = ((first * 512) as usize, ((last + 1) * 512) as usize);
    assert_eq!(&disk[start..end], image.as_slice());
    let (a_first, a_last) = sgdisk_range(&path, 2);
    assert!(
        disk[(a_first * 512) as usize..((a_last + 1) * 512) as usize]
            .iter()
            .all(|&b| b == 0)
    );
    assert!(
        disk[end..end + 512].iter().all(|&b| b == 0),
        "the next partition is untouched"
    );
    // The tools still accept the disk.
    run("sgdisk", &["-v", path.to_str().unwrap()], None);
}

#[test]
fn damaged_primary_falls_back_to_backup_and_both_damaged_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = sgdisk_image(dir.path());
    let mut disk = std::fs::read(&path).unwrap();
    disk[512 + 40] ^= 0xff; // first usable LBA in the primary header: header CRC fails
    std::fs::write(&path, &disk).unwrap();
    let table = GptTable::read(&mut FileDevice::open(&path).unwrap()).unwrap();
    assert!(table.from_backup);
    assert!(table.find("root_a").is_some());
    let last_lba = disk.len() - 512;
    disk[last_lba + 80] ^= 0x01; // entry count in the backup header
    std::fs::write(&path, &disk).unwrap();
    let err = GptTable::read(&mut FileDevice::open(&path).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("CRC32") && err.contains("disk.img"), "{err}");
}

#[test]
fn damaged_entry_array_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = sgdisk_image(dir.path());
    let mut disk = std::fs::read(&path).unwrap();
    disk[1024 + 128 + 56] ^= 0x20; // root_a's name in the primary entries: entries CRC fails
    std::fs::write(&path, &disk).unwrap();
    let table = GptTable::read(&mut FileDevice::open(&path).unwrap()).unwrap();
    assert!(table.from_backup, "the primary entry array must fail its CRC");
    assert_eq!(table.find("root_a").map(|p| p.number), Some(2));
    let err = Partition::open(FileDevice::open(&path).unwrap(), "root_c").unwrap_err();
    assert!(matches!(err, BlockError::PartitionNotFound { ref name, .. } if name == "root_c"));
}

#[test]
fn reads_the_table_sfdisk_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sf.img");
    std::fs::File::create(&path).unwrap().set_len(4 << 20).unwrap();
    let p = path.to_str().unwrap();
    run(
        "sfdisk",
        &["-q", p],
        Some("label: gpt\nsize=1MiB, name=root_a\nsize=1MiB, name=root_b\n"),
    );
    let dump = run("sfdisk", &["-d", p], None);
    let table = GptTable::read(&mut FileDevice::open(&path).unwrap()).unwrap();
    for part in &table.partitions {
        let line = dump
            .lines()
            .find(|l| l.contains(&format!("name=\"{}\"", part.name)))
            .unwrap();
        let num = |key: &str| -> u64 {
            let rest = &line[line.find(key).unwrap() + key.len()..];
            rest.trim_start()
                .split(',')
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        assert_eq!(part.first_lba, num("start="), "{line}");
        assert_eq!(part.last_lba - part.first_lba + 1, num("size="), "{line}");
    }
    assert_eq!(table.partitions.len(), 2);
}

mod robustness {
    use halyard_hardware::block::MemDevice;
    use halyard_hardware::block::gpt::GptTable;
    use proptest::prelude::*;

    /// A header with the right signature, LBA and CRC but arbitrary other fields.
    fn header(fields: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..92].copy_from_slice(&fields[..84]);
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[16..20].fill(0);
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        /// Hostile but CRC-correct headers and entry arrays never panic or allocate without bound.
        #[test]
        fn hostile_tables_are_rejected_or_parsed_without_panic(
            fields in proptest::collection::vec(any::<u8>(), 84),
            entries in proptest::collection::vec(any::<u8>(), 128 * 4),
            small in any::<bool>(),
        ) {
            let mut disk = vec![0u8; 64 * 1024];
            let mut h = header(&fields);
            if small {
                // Plausible geometry so parsing reaches the entries.
                h[40..48].copy_from_slice(&34u64.to_le_bytes());
                h[48..56].copy_from_slice(&100u64.to_le_bytes());
                h[72..80].copy_from_slice(&2u64.to_le_bytes());
                h[80..84].copy_from_slice(&4u32.to_le_bytes());
                h[84..88].copy_from_slice(&128u32.to_le_bytes());
                h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
                h[16..20].fill(0);
                let crc = crc32fast::hash(&h[..92]);
                h[16..20].copy_from_slice(&crc.to_le_bytes());
            }
            disk[512..1024].copy_from_slice(&h);
            disk[1024..1024 + entries.len()].copy_from_slice(&entries);
            if let Ok(table) = GptTable::read(&mut MemDevice::from_bytes("hostile", disk)) {
                for p in &table.partitions {
                    prop_assert!(p.first_lba >= 34 && p.last_lba <= 100 && p.first_lba <= p.last_lba);
                }
            }
        }
    }
}
