//! The partial download's companion file: which version of which artifact its bytes came from (URL
//! and [`Validator`], i.e. the HTTP `ETag` and size). Written atomically before the journal records
//! progress past it, so after a restart the fetcher resumes with `If-Range` against the same version,
//! and a server whose artifact changed answers with the whole new file (the download starts over).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable::FileError;
use crate::faults::CrashPoints;
use crate::fetch::Validator;
use crate::files::Files;

/// File name in the data directory.
pub const VALIDATOR_FILE: &str = "download.validator";

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    url: String,
    validator: Validator,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(VALIDATOR_FILE)
}

/// The stored validator of `url`; `None` when there is none, or it is for another URL or unreadable
/// (then the resume goes without `If-Range`, as before this file existed).
pub(super) fn load(files: &dyn Files, dir: &Path, url: &str) -> Result<Option<Validator>, FileError> {
    let Some(bytes) = files.read(&path(dir))? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Stored>(&bytes) {
        Ok(stored) if stored.url == url => Ok(Some(stored.validator)),
        Ok(stored) => {
            tracing::debug!(stored = %stored.url, url, "validator is for another artifact");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable download validator ignored");
            Ok(None)
        }
    }
}

/// Replace the stored validator.
pub(super) fn store(
    files: &dyn Files,
    dir: &Path,
    url: &str,
    validator: &Validator,
    crash: &dyn CrashPoints,
) -> Result<(), FileError> {
    let stored = Stored {
        url: url.to_owned(),
        validator: validator.clone(),
    };
    let bytes = serde_json::to_vec(&stored).map_err(|e| FileError::Io {
        path: path(dir),
        op: "encode",
        source: std::io::Error::other(e),
    })?;
    files.write_atomic(&path(dir), &bytes, 0o600, crash)
}

/// Forget it (the download was discarded).
pub(super) fn remove(files: &dyn Files, dir: &Path) -> Result<(), FileError> {
    files.remove(&path(dir))
}
