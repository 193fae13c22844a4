//! GPT (UEFI 2.x) reading: header and entry array with their CRC32s, the backup header as fallback,
//! and [`Partition`], a [`BlockDevice`] window onto one partition found by name.

use std::path::{Path, PathBuf};

use super::{BlockDevice, check_range};
use crate::error::BlockError;

const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Cap on the entry array we are willing to read (the usual array is 16 KiB).
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// One used GPT entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// 1-based entry number (as `sgdisk` numbers partitions).
    pub number: u32,
    /// Partition name (UTF-16LE in the entry).
    pub name: String,
    /// Type GUID bytes as stored (mixed-endian).
    pub type_guid: [u8; 16],
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
}

/// A parsed GPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptTable {
    /// Logical sector size the table was found with (512 or 4096).
    pub sector_size: u64,
    /// Whether the table came from the backup header (the primary was damaged).
    pub from_backup: bool,
    /// Used entries, in table order.
    pub partitions: Vec<GptPartition>,
}

impl GptTable {
    /// Read the GPT of `dev`: the primary header at LBA 1, else the backup at the last LBA; both with
    /// 512- and 4096-byte sectors.
    pub fn read<D: BlockDevice + ?Sized>(dev: &mut D) -> Result<Self, BlockError> {
        let mut reasons = Vec::new();
        for sector_size in [512u64, 4096] {
            let last = (dev.size() / sector_size).saturating_sub(1);
            for (lba, from_backup) in [(1, false), (last, true)] {
                match read_at_lba(dev, sector_size, lba) {
                    Ok(partitions) => {
                        return Ok(Self {
                            sector_size,
                            from_backup,
                            partitions,
                        });
                    }
                    Err(reason) => reasons.push(format!("{sector_size}-byte sectors, LBA {lba}: {reason}")),
                }
            }
        }
        Err(gpt_err(dev.location(), reasons.join("; ")))
    }

    /// The entry named `name`.
    pub fn find(&self, name: &str) -> Option<&GptPartition> {
        self.partitions.iter().find(|p| p.name == name)
    }
}

fn gpt_err(path: &Path, reason: String) -> BlockError {
    BlockError::Gpt {
        path: path.to_path_buf(),
        reason,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Parse the header at `lba` and its entries; `Err` carries the reason for the error message.
fn read_at_lba<D: BlockDevice + ?Sized>(
    dev: &mut D,
    sector: u64,
    lba: u64,
) -> Result<Vec<GptPartition>, String> {
    let mut header = vec![0u8; sector as usize];
    dev.read_at(lba * sector, &mut header)
        .map_err(|e| e.to_string())?;
    if &header[..8] != SIGNATURE {
        return Err("no EFI PART signature".into());
    }
    let header_size = u32_at(&header, 12) as usize;
    if !(92..=sector as usize).contains(&header_size) {
        return Err(format!("header size {header_size} out of range"));
    }
    let stored_crc = u32_at(&header, 16);
    header[16..20].fill(0);
    let crc = crc32fast::hash(&header[..header_size]);
    if crc != stored_crc {
        return Err(format!("header CRC32 {crc:08x} != stored {stored_crc:08x}"));
    }
    if u64_at(&header, 24) != lba {
        return Err(format!("header says it lives at LBA {}", u64_at(&header, 24)));
    }
    let (entries_lba, count, entry_size) = (u64_at(&header, 72), u32_at(&header, 80), u32_at(&header, 84));
    let total = u64::from(count) * u64::from(entry_size);
    if entry_size < 128 || entry_size % 8 != 0 || total > MAX_ENTRY_BYTES {
        return Err(format!("bad entry array: {count} entries of {entry_size} bytes"));
    }
    let entries_at = entries_lba
        .checked_mul(sector)
        .ok_or("entry array LBA overflows")?;
    let mut entries = vec![0u8; total as usize];
    dev.read_at(entries_at, &mut entries).map_err(|e| e.to_string())?;
    let (stored, crc) = (u32_at(&header, 88), crc32fast::hash(&entries));
    if crc != stored {
        return Err(format!("entry array CRC32 {crc:08x} != stored {stored:08x}"));
    }
    let (first_usable, last_usable) = (u64_at(&header, 40), u64_at(&header, 48));
    if last_usable
        .checked_add(1)
        .and_then(|n| n.checked_mul(sector))
        .is_none_or(|end| end > dev.size())
    {
        return Err(format!(
            "last usable LBA {last_usable} lies past the end of the device"
        ));
    }
    let mut out = Vec::new();
    for (i, raw) in entries.chunks_exact(entry_size as usize).enumerate() {
        if raw[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let part = parse_entry(i as u32 + 1, raw);
        if part.first_lba < first_usable || part.last_lba > last_usable || part.first_lba > part.last_lba {
            return Err(format!(
                "partition {} ({}) lies outside the usable area",
                part.number, part.name
            ));
        }
        out.push(part);
    }
    Ok(out)
}

fn parse_entry(number: u32, raw: &[u8]) -> GptPartition {
    let units: Vec<u16> = raw[56..128]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let mut type_guid = [0u8; 16];
    type_guid.copy_from_slice(&raw[..16]);
    GptPartition {
        number,
        name: String::from_utf16_lossy(&units),
        type_guid,
        first_lba: u64_at(raw, 32),
        last_lba: u64_at(raw, 40),
    }
}

/// A partition of a GPT disk as a [`BlockDevice`]: offsets are relative to its first sector and
/// accesses cannot leave it.
#[derive(Debug)]
pub struct Partition<D: BlockDevice> {
    disk: D,
    start: u64,
    size: u64,
    path: PathBuf,
}

impl<D: BlockDevice> Partition<D> {
    /// Open the partition named `name` on `disk`.
    pub fn open(mut disk: D, name: &str) -> Result<Self, BlockError> {
        let table = GptTable::read(&mut disk)?;
        let part = table.find(name).ok_or_else(|| BlockError::PartitionNotFound {
            path: disk.location().to_path_buf(),
            name: name.to_owned(),
        })?;
        let start = part.first_lba * table.sector_size;
        let size = (part.last_lba - part.first_lba + 1) * table.sector_size;
        if start + size > disk.size() {
            let reason = format!("partition {name} ends past the end of the disk");
            return Err(gpt_err(disk.location(), reason));
        }
        let mut path = disk.location().as_os_str().to_owned();
        path.push(format!("#{name}"));
        Ok(Self {
            disk,
            start,
            size,
            path: PathBuf::from(path),
        })
    }

    /// Byte offset of the partition inside the disk.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl<D: BlockDevice> BlockDevice for Partition<D> {
    fn backend(&self) -> &'static str {
        "gpt-partition"
    }
    fn location(&self) -> &Path {
        &self.path
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(self, offset, buf.len())?;
        self.disk.read_at(self.start + offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        check_range(self, offset, data.len())?;
        self.disk.write_at(self.start + offset, data)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.disk.flush()
    }
}
