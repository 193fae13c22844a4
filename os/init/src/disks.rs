//! Partitions by GPT name: each disk's GPT is read with `halyard_hardware::block::gpt` (the same code
//! the agent's tools use), and `/dev/disk/by-partlabel/NAME` links point at the partition nodes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use halyard_hardware::block::file::FileDevice;
use halyard_hardware::block::gpt::GptTable;

use crate::say;

/// Partitions the init needs.
const REQUIRED: [&str; 4] = ["state", "root-a", "root-b", "data"];

/// Partition name → device node.
#[derive(Debug, Clone, Default)]
pub struct Partitions {
    by_name: BTreeMap<String, String>,
}

impl Partitions {
    /// The node of partition `name`.
    pub fn device(&self, name: &str) -> Result<String, String> {
        self.by_name
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no partition named {name}"))
    }
}

/// `vda` + 2 → `vda2`; `nvme0n1` + 2 → `nvme0n1p2`.
pub fn partition_node(disk: &str, number: u32) -> String {
    let sep = if disk.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    format!("/dev/{disk}{sep}{number}")
}

fn scan() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return found;
    };
    let mut disks: Vec<String> = entries
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|d| !d.starts_with("loop") && !d.starts_with("ram"))
        .collect();
    disks.sort();
    for disk in disks {
        let Ok(mut dev) = FileDevice::open_read_only(format!("/dev/{disk}")) else {
            continue;
        };
        let Ok(table) = GptTable::read(&mut dev) else {
            continue;
        };
        for p in table.partitions {
            let node = partition_node(&disk, p.number);
            if Path::new(&node).exists() {
                found.entry(p.name).or_insert(node);
            }
        }
    }
    found
}

/// Wait (up to `timeout`) until every required partition has a node; make the by-partlabel links.
pub fn find(timeout: Duration) -> Result<Partitions, String> {
    let start = Instant::now();
    let by_name = loop {
        let found = scan();
        if REQUIRED.iter().all(|n| found.contains_key(*n)) {
            break found;
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "partitions {REQUIRED:?} not all found (have {:?})",
                found.keys()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let dir = "/dev/disk/by-partlabel";
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    for (name, node) in &by_name {
        let link = format!("{dir}/{name}");
        if let Err(e) = std::os::unix::fs::symlink(node, &link) {
            say!("link {link}: {e}");
        }
    }
    Ok(Partitions { by_name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_nodes() {
        assert_eq!(partition_node("vda", 2), "/dev/vda2");
        assert_eq!(partition_node("nvme0n1", 3), "/dev/nvme0n1p3");
        assert_eq!(partition_node("mmcblk0", 1), "/dev/mmcblk0p1");
    }
}
