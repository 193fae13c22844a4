//! Where the agent keeps its small durable records (journal, identity key, sequence counter, download
//! validator): [`Files`], a whole-file store with crash-safe replacement. [`DiskFiles`] is the real
//! one (the [`crate::durable`] protocol: temp file, fsync, rename, fsync the directory);
//! [`MemFiles`] keeps them in memory for simulated fleets, where thousands of devices share one
//! process. Both reach the same crash points in the same order and pass the same conformance tests
//! (`tests/files.rs`): after a cut, a reader sees the old content or the new one, never a mix.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::durable::{self, FileError};
use crate::faults::CrashPoints;

/// A store of whole files, each replaced atomically.
pub trait Files: fmt::Debug + Send + Sync {
    /// The content of `path`; `Ok(None)` when there is none.
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, FileError>;
    /// Replace `path` with `bytes` (mode `mode` when created on disk), crash-safely: the crash points
    /// `file.create_temp`, `file.write_temp_tail`, `file.fsync_temp`, `file.rename` and
    /// `file.fsync_dir` are reached in that order, and a cut before `file.rename` keeps the old content.
    fn write_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        crash: &dyn CrashPoints,
    ) -> Result<(), FileError>;
    /// Remove `path`; nothing to do when it does not exist.
    fn remove(&self, path: &Path) -> Result<(), FileError>;
    /// Move `from` to `to` (replacing it), e.g. a corrupt journal aside.
    fn rename(&self, from: &Path, to: &Path) -> Result<(), FileError>;
}

/// The files on disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskFiles;

impl DiskFiles {
    /// A shared handle, for the constructors that take one.
    pub fn shared() -> Arc<dyn Files> {
        Arc::new(DiskFiles)
    }
}

impl Files for DiskFiles {
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, FileError> {
        durable::read_optional(path)
    }

    fn write_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        crash: &dyn CrashPoints,
    ) -> Result<(), FileError> {
        durable::write_atomic(path, bytes, mode, crash)
    }

    fn remove(&self, path: &Path) -> Result<(), FileError> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(durable::io_err(path, "remove")(e)),
            _ => Ok(()),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), FileError> {
        std::fs::rename(from, to).map_err(durable::io_err(from, "rename"))
    }
}

/// Files in memory (a simulated device's data partition). Clones share the same files, so a
/// simulated reboot that builds a new agent sees what the last one wrote.
#[derive(Debug, Clone, Default)]
pub struct MemFiles {
    files: Arc<Mutex<HashMap<PathBuf, Vec<u8>>>>,
}

impl MemFiles {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Vec<u8>>> {
        // Every update below is a single insert or remove: a panic cannot leave a half-written file.
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Files for MemFiles {
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, FileError> {
        Ok(self.lock().get(path).cloned())
    }

    fn write_atomic(
        &self,
        path: &Path,
        bytes: &[u8],
        _mode: u32,
        crash: &dyn CrashPoints,
    ) -> Result<(), FileError> {
        // The same points as on disk; the temp file's content matters to no reader (each write
        // truncates it first), so only the rename changes what `read` sees.
        crash.reach("file.create_temp")?;
        crash.reach("file.write_temp_tail")?;
        crash.reach("file.fsync_temp")?;
        crash.reach("file.rename")?;
        self.lock().insert(path.to_path_buf(), bytes.to_vec());
        crash.reach("file.fsync_dir")?;
        Ok(())
    }

    fn remove(&self, path: &Path) -> Result<(), FileError> {
        self.lock().remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), FileError> {
        let mut files = self.lock();
        let bytes = files.remove(from).ok_or_else(|| FileError::Io {
            path: from.to_path_buf(),
            op: "rename",
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        files.insert(to.to_path_buf(), bytes);
        Ok(())
    }
}
