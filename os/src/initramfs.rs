//! The initramfs: an uncompressed `newc` cpio archive written here (deterministic: sorted entries,
//! fixed inode numbers, owner 0:0, one timestamp). It holds `/init` (the static `halyard-init`), the
//! kernel modules it loads (`/lib/modules/*.ko`, in the order of `/lib/modules/load.order`) and the
//! mount points it needs.

use std::path::Path;

use crate::error::OsError;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    mode: u32,
    rdev: (u32, u32),
    data: Vec<u8>,
}

/// An archive being assembled.
#[derive(Debug, Clone, Default)]
pub struct Cpio {
    entries: Vec<Entry>,
}

impl Cpio {
    /// A folder (parents are not added implicitly).
    pub fn dir(&mut self, name: &str) {
        self.push(name, S_IFDIR | 0o755, (0, 0), Vec::new());
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, mode: u32, data: Vec<u8>) {
        self.push(name, S_IFREG | (mode & 0o7777), (0, 0), data);
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.push(name, S_IFCHR | (mode & 0o7777), (major, minor), Vec::new());
    }

    fn push(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: Vec<u8>) {
        self.entries.push(Entry {
            name: name.trim_start_matches('/').to_owned(),
            mode,
            rdev,
            data,
        });
    }

    /// The archive bytes: entries sorted by name (parents first), then the trailer.
    pub fn to_bytes(&self, mtime: u64) -> Vec<u8> {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let nlink = if e.mode & S_IFDIR != 0 { 2 } else { 1 };
            header(&mut out, i as u32 + 1, e, nlink, mtime);
            out.extend_from_slice(&e.data);
            pad4(&mut out);
        }
        let trailer = Entry {
            name: "TRAILER!!!".into(),
            mode: 0,
            rdev: (0, 0),
            data: Vec::new(),
        };
        header(&mut out, 0, &trailer, 1, 0);
        out
    }
}

fn header(out: &mut Vec<u8>, ino: u32, e: &Entry, nlink: u32, mtime: u64) {
    let fields = [
        ino,
        e.mode,
        0,
        0,
        nlink,
        u32::try_from(mtime).unwrap_or(u32::MAX),
        e.data.len() as u32,
        0,
        0,
        e.rdev.0,
        e.rdev.1,
        e.name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(e.name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// The boot initramfs: `init` as `/init`, `modules` (in load order) under `/lib/modules`.
pub fn build(init: &Path, modules: &[std::path::PathBuf], mtime: u64) -> Result<Vec<u8>, OsError> {
    let mut cpio = Cpio::default();
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "newroot",
        "state",
        "lib",
        "lib/modules",
    ] {
        cpio.dir(d);
    }
    cpio.char_dev("dev/console", 0o600, 5, 1);
    cpio.file("init", 0o755, std::fs::read(init).map_err(OsError::io(init))?);
    let mut order = String::new();
    for m in modules {
        let name = m
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        cpio.file(
            &format!("lib/modules/{name}"),
            0o644,
            std::fs::read(m).map_err(OsError::io(m))?,
        );
        order.push_str(&name);
        order.push('\n');
    }
    cpio.file("lib/modules/load.order", 0o644, order.into_bytes());
    Ok(cpio.to_bytes(mtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_tool_lists_what_we_wrote() {
        let mut c = Cpio::default();
        c.file("b/x", 0o644, b"hello".to_vec());
        c.dir("b");
        c.char_dev("dev/console", 0o600, 5, 1);
        c.dir("dev");
        let bytes = c.to_bytes(1_700_000_000);
        assert!(bytes.len().is_multiple_of(4));
        assert!(bytes.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&bytes);
        let b = text.find("b\0").unwrap();
        let bx = text.find("b/x\0").unwrap();
        assert!(b < bx, "parents first");
        assert!(text.contains("TRAILER!!!"));
        assert_eq!(c.to_bytes(1_700_000_000), bytes);
    }
}
