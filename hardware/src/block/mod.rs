//! Positional block I/O: the [`BlockDevice`] trait and its backends.
//!
//! - [`file`](mod@file): a whole file, a real block device (`O_SYNC`, size by seek) and [`file::AtomicFile`]
//!   (temp + rename on flush, for environments stored in files).
//! - [`gpt`]: a partition inside a GPT disk (image or device), found by name, CRC-checked.
//! - [`faulty`]: [`faulty::FaultyDevice`] wraps any device to cut power, tear writes, flip bits or fail.
//! - [`slot_writer`]: stream an image into a slot and verify its SHA-256 by reading it back.
//! - [`MemDevice`]: an in-memory medium whose clones share the bytes (a "disk" that survives a simulated
//!   reboot of everything above it).

pub mod faulty;
pub mod file;
pub mod gpt;
pub mod slot_writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::BlockError;

/// A fixed-size device with positional, exact-length reads and writes.
///
/// Writes may sit in a cache until [`BlockDevice::flush`] returns; only flushed data is guaranteed to
/// survive a power cut.
pub trait BlockDevice: fmt::Debug + Send {
    /// Backend name for errors and logs.
    fn backend(&self) -> &'static str;
    /// Path (or a descriptive name) of the device.
    fn location(&self) -> &Path;
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`; fails with [`BlockError::OutOfRange`] past the end.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Write all of `data` at `offset`; fails with [`BlockError::OutOfRange`] past the end.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError>;
    /// Make every earlier write durable.
    fn flush(&mut self) -> Result<(), BlockError>;
}

impl<D: BlockDevice + ?Sized> BlockDevice for Box<D> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn location(&self) -> &Path {
        (**self).location()
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        (**self).write_at(offset, data)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        (**self).flush()
    }
}

/// Check that `len` bytes at `offset` lie inside a device of `size` bytes.
pub(crate) fn check_range<D: BlockDevice + ?Sized>(
    dev: &D,
    offset: u64,
    len: usize,
) -> Result<(), BlockError> {
    let size = dev.size();
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange {
            backend: dev.backend(),
            path: dev.location().to_path_buf(),
            offset,
            len,
            size,
        }),
    }
}

/// An in-memory device. Clones share the same bytes, like two handles on one disk; writes are
/// immediately "durable" (use [`faulty::FaultyDevice`] to model a volatile cache).
#[derive(Debug, Clone)]
pub struct MemDevice {
    name: PathBuf,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl MemDevice {
    /// A zero-filled device of `size` bytes called `name` in errors.
    pub fn new(name: impl Into<PathBuf>, size: usize) -> Self {
        Self::from_bytes(name, vec![0; size])
    }

    /// A device holding `bytes`.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            bytes: Arc::new(Mutex::new(bytes)),
        }
    }

    /// A copy of the current contents.
    pub fn snapshot(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding this lock cannot leave the Vec half-updated (copies only).
        self.bytes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl BlockDevice for MemDevice {
    fn backend(&self) -> &'static str {
        "mem"
    }
    fn location(&self) -> &Path {
        &self.name
    }
    fn size(&self) -> u64 {
        self.lock().len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(self, offset, buf.len())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.lock()[start..start + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        check_range(self, offset, data.len())?;
        let start = offset as usize;
        self.lock()[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_device_clones_share_bytes_and_check_bounds() {
        let mut a = MemDevice::new("disk", 16);
        let mut b = a.clone();
        a.write_at(4, b"abcd").unwrap();
        let mut buf = [0u8; 4];
        b.read_at(4, &mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        assert!(matches!(
            b.write_at(14, b"xyz"),
            Err(BlockError::OutOfRange { size: 16, .. })
        ));
        assert!(matches!(
            b.read_at(u64::MAX, &mut buf),
            Err(BlockError::OutOfRange { .. })
        ));
    }
}
