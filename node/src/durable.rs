//! Crash-safe file replacement: write a temp file, fsync it, rename it over the target, fsync the
//! directory. Readers see the old content or the new one, never a mix; a leftover temp file (power
//! cut before the rename) is ignored and overwritten by the next write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::faults::{CrashPoints, PowerLost};

/// A durable file operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The OS refused.
    #[error("{op} {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// Why.
        source: io::Error,
    },
    /// A crash test cut the power.
    #[error(transparent)]
    PowerLost(#[from] PowerLost),
}

/// `op` on `path` failed with `source`.
pub fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> FileError + 'a {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// The temp file used while replacing `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replace `path` with `bytes` (file mode `mode` when created), crash-safely.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, crash: &dyn CrashPoints) -> Result<(), FileError> {
    let temp = temp_path(path);
    crash.reach("file.create_temp")?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)
        .map_err(io_err(&temp, "create"))?;
    // Two writes, with a crash point between them: a cut there leaves a torn temp file behind.
    let (head, tail) = bytes.split_at(bytes.len() / 2);
    file.write_all(head).map_err(io_err(&temp, "write"))?;
    crash.reach("file.write_temp_tail")?;
    file.write_all(tail).map_err(io_err(&temp, "write"))?;
    crash.reach("file.fsync_temp")?;
    file.sync_all().map_err(io_err(&temp, "fsync"))?;
    crash.reach("file.rename")?;
    fs::rename(&temp, path).map_err(io_err(path, "rename"))?;
    crash.reach("file.fsync_dir")?;
    sync_dir(path)
}

/// fsync the directory holding `path` (makes a rename or a new file durable).
pub fn sync_dir(path: &Path) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

/// Read `path`; `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "read")(e)),
    }
}
