//! File-backed devices: a whole file, a real block device, and [`AtomicFile`] (replace on flush).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{BlockDevice, check_range};
use crate::error::BlockError;

/// A regular file or a block device node used as a [`BlockDevice`] of fixed size.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    path: PathBuf,
    size: u64,
    backend: &'static str,
}

fn io_err(
    backend: &'static str,
    path: &Path,
    op: &'static str,
    offset: u64,
    source: io::Error,
) -> BlockError {
    BlockError::Io {
        backend,
        path: path.to_path_buf(),
        op,
        offset,
        source,
    }
}

impl FileDevice {
    /// Open an existing file read-write; its current length is the device size.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BlockError> {
        Self::open_with(path.as_ref(), OpenOptions::new().read(true).write(true), "file")
    }

    /// Open an existing file read-only (writes fail with the OS error), e.g. the active slot.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, BlockError> {
        Self::open_with(path.as_ref(), OpenOptions::new().read(true), "file")
    }

    /// Create (or truncate) a file of `size` zero bytes.
    pub fn create(path: impl AsRef<Path>, size: u64) -> Result<Self, BlockError> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| io_err("file", path, "create", 0, e))?;
        file.set_len(size)
            .map_err(|e| io_err("file", path, "set_len", size, e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            size,
            backend: "file",
        })
    }

    /// Open a real block device (e.g. `/dev/mmcblk0p3`) with `O_SYNC`, sized by seeking to its end.
    /// The same code serves a file, which makes it testable without root.
    pub fn open_block_device(path: impl AsRef<Path>) -> Result<Self, BlockError> {
        let flags = rustix::fs::OFlags::SYNC.bits() as i32;
        Self::open_with(
            path.as_ref(),
            OpenOptions::new().read(true).write(true).custom_flags(flags),
            "blockdev",
        )
    }

    fn open_with(path: &Path, options: &OpenOptions, backend: &'static str) -> Result<Self, BlockError> {
        let mut file = options
            .open(path)
            .map_err(|e| io_err(backend, path, "open", 0, e))?;
        // Seeking works for regular files and block devices alike (st_size is 0 for the latter).
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| io_err(backend, path, "size", 0, e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            size,
            backend,
        })
    }
}

impl BlockDevice for FileDevice {
    fn backend(&self) -> &'static str {
        self.backend
    }
    fn location(&self) -> &Path {
        &self.path
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(self, offset, buf.len())?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| io_err(self.backend, &self.path, "read", offset, e))
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        check_range(self, offset, data.len())?;
        self.file
            .write_all_at(data, offset)
            .map_err(|e| io_err(self.backend, &self.path, "write", offset, e))
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.file
            .sync_data()
            .map_err(|e| io_err(self.backend, &self.path, "flush", 0, e))
    }
}

/// A small file held in memory whose [`BlockDevice::flush`] replaces the file atomically: write a
/// temporary file next to it, fsync, rename over the original, fsync the directory. A power cut at
/// any point leaves the old or the new contents, never a mix. Meant for environment files (KiBs).
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    image: Vec<u8>,
    dirty: bool,
}

impl AtomicFile {
    /// Load an existing file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BlockError> {
        let path = path.as_ref().to_path_buf();
        let image = std::fs::read(&path).map_err(|e| io_err("atomic-file", &path, "open", 0, e))?;
        Ok(Self {
            path,
            image,
            dirty: false,
        })
    }

    /// Create or replace the file with `bytes` (atomically) and open it.
    pub fn create(path: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self, BlockError> {
        let path = path.as_ref().to_path_buf();
        replace_file(&path, &bytes).map_err(|e| io_err("atomic-file", &path, "create", 0, e))?;
        Ok(Self {
            path,
            image: bytes,
            dirty: false,
        })
    }
}

impl BlockDevice for AtomicFile {
    fn backend(&self) -> &'static str {
        "atomic-file"
    }
    fn location(&self) -> &Path {
        &self.path
    }
    fn size(&self) -> u64 {
        self.image.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(self, offset, buf.len())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.image[start..start + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockError> {
        check_range(self, offset, data.len())?;
        let start = offset as usize;
        self.image[start..start + data.len()].copy_from_slice(data);
        self.dirty = true;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        if self.dirty {
            replace_file(&self.path, &self.image)
                .map_err(|e| io_err("atomic-file", &self.path, "replace", 0, e))?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// Replace `path` with `bytes` atomically (temp file in the same directory, fsync, rename, fsync dir).
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".halyard-tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(&dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_device_reads_back_and_stays_in_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let mut dev = FileDevice::create(&path, 4096).unwrap();
        dev.write_at(100, b"hello").unwrap();
        dev.flush().unwrap();
        let mut again = FileDevice::open_block_device(&path).unwrap();
        assert_eq!(again.size(), 4096);
        let mut buf = [0u8; 5];
        again.read_at(100, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert!(matches!(
            again.write_at(4095, b"xx"),
            Err(BlockError::OutOfRange { .. })
        ));
        let mut ro = FileDevice::open_read_only(&path).unwrap();
        assert!(matches!(
            ro.write_at(0, b"x"),
            Err(BlockError::Io { op: "write", .. })
        ));
    }

    #[test]
    fn atomic_file_changes_the_file_only_on_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        let mut f = AtomicFile::create(&path, vec![b'o'; 8]).unwrap();
        f.write_at(0, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"oooooooo");
        f.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"newooooo");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temporary file left behind: {names:?}");
    }
}
