//! The error type of every builder step.

use std::path::{Path, PathBuf};

/// A build or run step failed.
#[derive(Debug, thiserror::Error)]
pub enum OsError {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The image spec is invalid.
    #[error("image spec {path}: {reason}")]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An external tool failed or is missing.
    #[error("{program}: {reason}")]
    Tool {
        /// The program.
        program: String,
        /// Exit status and stderr, or why it could not start.
        reason: String,
    },
    /// Kernel package or module trouble.
    #[error("kernel: {0}")]
    Kernel(String),
    /// Disk image layout trouble.
    #[error("disk {path}: {reason}")]
    Disk {
        /// The disk image.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Bundle signing or delta.
    #[error("bundle: {0}")]
    Bundle(String),
    /// Boot environment.
    #[error(transparent)]
    Boot(#[from] halyard_hardware::BootError),
}

impl OsError {
    /// A closure mapping an I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OsError + '_ {
        move |source| OsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Run `cmd`; fail with its stderr unless it exits 0.
pub fn run_tool(cmd: &mut std::process::Command) -> Result<std::process::Output, OsError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    tracing::debug!(?cmd, "running");
    let out = cmd.output().map_err(|e| OsError::Tool {
        program: program.clone(),
        reason: format!("cannot start: {e}"),
    })?;
    if !out.status.success() {
        return Err(OsError::Tool {
            program,
            reason: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(out)
}
