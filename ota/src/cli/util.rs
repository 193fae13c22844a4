//! Shared pieces of the command line: atomic output files, progress bars, time parsing, output.

use std::fs::{self, File};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cli::CliError;

/// A file written under a temporary name in the destination's directory and renamed over the
/// destination only by [`AtomicFile::commit`]; dropped uncommitted, the temporary file is removed.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl AtomicFile {
    /// Creates the temporary file next to `dest`.
    pub fn create(dest: &Path) -> Result<Self, CliError> {
        let name = dest
            .file_name()
            .ok_or_else(|| CliError::Usage(format!("output {} has no file name", dest.display())))?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id());
        let tmp = dest.with_file_name(tmp_name);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(CliError::io(format!("creating {}", tmp.display())))?;
        Ok(Self {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> Result<&mut File, CliError> {
        self.file
            .as_mut()
            .ok_or_else(|| CliError::Usage("output file already committed".to_owned()))
    }

    /// Flushes to disk and renames over the destination.
    pub fn commit(mut self) -> Result<(), CliError> {
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(CliError::io(format!("syncing {}", self.tmp.display())))?;
        }
        fs::rename(&self.tmp, &self.dest).map_err(CliError::io(format!(
            "renaming {} to {}",
            self.tmp.display(),
            self.dest.display()
        )))?;
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Best effort: persist the rename itself.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file.take();
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `dest` atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = AtomicFile::create(dest)?;
    out.file()?
        .write_all(bytes)
        .map_err(CliError::io(format!("writing {}", dest.display())))?;
    out.commit()
}

/// Streams into `dest` through a buffer and renames it into place only when `fill` succeeded.
pub fn write_atomic_with<T>(
    dest: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&mut File>) -> Result<T, CliError>,
) -> Result<T, CliError> {
    use std::io::Write;
    let mut out = AtomicFile::create(dest)?;
    let mut writer = std::io::BufWriter::new(out.file()?);
    let value = fill(&mut writer)?;
    writer
        .flush()
        .map_err(CliError::io(format!("writing {}", dest.display())))?;
    drop(writer);
    out.commit()?;
    Ok(value)
}

/// Reads a whole file with a contextual error.
pub fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    fs::read(path).map_err(CliError::io(format!("reading {}", path.display())))
}

/// Opens a file with a contextual error.
pub fn open(path: &Path) -> Result<File, CliError> {
    File::open(path).map_err(CliError::io(format!("opening {}", path.display())))
}

/// A byte progress bar on stderr (a spinner when `total` is 0), hidden when stderr is not a terminal.
pub fn progress(total: u64, message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    ProgressBar::new(total).with_style(style).with_message(message)
}

/// Parses an RFC 3339 timestamp (clap value parser).
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| format!("expected an RFC 3339 time like 2027-01-01T00:00:00Z: {e}"))
}

/// Formats a timestamp as RFC 3339.
pub fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// The current time, truncated to whole seconds.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Prints `value` as JSON when `json`, else `text`.
pub fn emit(json: bool, value: &Value, text: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}
