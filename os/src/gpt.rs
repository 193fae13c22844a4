//! Writing a GPT (UEFI 2.x) with 512-byte sectors: protective MBR, primary header and entry array,
//! backup array and header. Partitions start on 1 MiB boundaries; GUIDs are derived from a seed so the
//! same layout gives the same bytes. `halyard_hardware::block::gpt` reads it back (tests check both
//! that and `sgdisk -v`).

use sha2::{Digest, Sha256};

/// Sector size.
pub const SECTOR: u64 = 512;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
const ALIGN: u64 = 2048;
/// "Linux filesystem data" type GUID, as stored.
const LINUX_FS: [u8; 16] = [
    0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
];

/// A partition placed on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// GPT name.
    pub name: String,
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
}

impl Placed {
    /// Byte offset in the disk.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * SECTOR
    }
}

/// Partitions in order plus the disk size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// In table order.
    pub partitions: Vec<Placed>,
    /// Whole disk in bytes.
    pub disk_bytes: u64,
}

impl Layout {
    /// Place `(name, bytes)` partitions one after the other from 1 MiB, each rounded up to 1 MiB.
    pub fn new(parts: &[(&str, u64)]) -> Self {
        let mut next = ALIGN;
        let mut partitions = Vec::new();
        for (name, bytes) in parts {
            let sectors = bytes.div_ceil(SECTOR).div_ceil(ALIGN) * ALIGN;
            partitions.push(Placed {
                name: (*name).to_owned(),
                first_lba: next,
                last_lba: next + sectors - 1,
            });
            next += sectors;
        }
        // Room for the backup array and header, kept aligned.
        Self {
            partitions,
            disk_bytes: (next + ALIGN) * SECTOR,
        }
    }

    /// The partition named `name`.
    pub fn find(&self, name: &str) -> Option<&Placed> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// `(offset, bytes)` writes that put the GPT on the disk; GUIDs derive from `seed`.
    pub fn gpt_writes(&self, seed: &str) -> Vec<(u64, Vec<u8>)> {
        let last = self.disk_bytes / SECTOR - 1;
        let entries = self.entries(seed);
        let entries_crc = crc32fast::hash(&entries);
        let primary = self.header(seed, 1, last, 2, entries_crc);
        let backup_entries_lba = last - ENTRY_SECTORS;
        let backup = self.header(seed, last, 1, backup_entries_lba, entries_crc);
        vec![
            (0, protective_mbr(last)),
            (SECTOR, primary),
            (2 * SECTOR, entries.clone()),
            (backup_entries_lba * SECTOR, entries),
            (last * SECTOR, backup),
        ]
    }

    fn entries(&self, seed: &str) -> Vec<u8> {
        let mut out = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut out[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&LINUX_FS);
            e[16..32].copy_from_slice(&guid(seed, &p.name));
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            for (j, unit) in p.name.encode_utf16().take(36).enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
            }
        }
        out
    }

    fn header(&self, seed: &str, me: u64, alternate: u64, entries_lba: u64, entries_crc: u32) -> Vec<u8> {
        let last = self.disk_bytes / SECTOR - 1;
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&me.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(last - ENTRY_SECTORS - 1).to_le_bytes());
        h[56..72].copy_from_slice(&guid(seed, ""));
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }
}

fn protective_mbr(last: u64) -> Vec<u8> {
    let mut m = vec![0u8; SECTOR as usize];
    let p = &mut m[446..462];
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    p[4] = 0xee;
    p[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(last).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&size.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

/// A version-4-shaped GUID (as stored) derived from `seed` and `name`.
fn guid(seed: &str, name: &str) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"halyard-os gpt\0")
        .chain_update(seed.as_bytes())
        .chain_update(b"\0")
        .chain_update(name.as_bytes())
        .finalize();
    let mut g = [0u8; 16];
    g.copy_from_slice(&digest[..16]);
    g[7] = (g[7] & 0x0f) | 0x40;
    g[8] = (g[8] & 0x3f) | 0x80;
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use halyard_hardware::block::MemDevice;
    use halyard_hardware::block::gpt::GptTable;

    fn disk(layout: &Layout) -> MemDevice {
        let mut bytes = vec![0u8; layout.disk_bytes as usize];
        for (at, data) in layout.gpt_writes("test") {
            bytes[at as usize..at as usize + data.len()].copy_from_slice(&data);
        }
        MemDevice::from_bytes("mem", bytes)
    }

    #[test]
    fn hardware_reads_what_we_write() {
        let layout = Layout::new(&[("state", 1 << 20), ("root-a", 3 << 20), ("data", 5000)]);
        let table = GptTable::read(&mut disk(&layout)).unwrap();
        assert!(!table.from_backup);
        let names: Vec<_> = table.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["state", "root-a", "data"]);
        let a = table.find("root-a").unwrap();
        assert_eq!((a.first_lba, a.last_lba), (4096, 4096 + 6144 - 1));
        assert_eq!(layout.find("data").unwrap().size(), 1 << 20);
    }

    #[test]
    fn backup_header_is_valid_alone() {
        let layout = Layout::new(&[("root-a", 1 << 20)]);
        let mut bytes = disk(&layout).snapshot();
        bytes[512..1024].fill(0);
        let table = GptTable::read(&mut MemDevice::from_bytes("mem", bytes)).unwrap();
        assert!(table.from_backup);
        assert_eq!(table.partitions[0].name, "root-a");
    }

    #[test]
    fn same_seed_same_bytes() {
        let layout = Layout::new(&[("a", 1 << 20)]);
        assert_eq!(layout.gpt_writes("x"), layout.gpt_writes("x"));
        assert_ne!(layout.gpt_writes("x"), layout.gpt_writes("y"));
    }
}
