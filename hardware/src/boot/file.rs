//! The file-backed fake: variables in a plain `name=value` text file, replaced atomically (temp +
//! rename) on every store. Tests and the simulator use it as a device's bootloader environment;
//! "rebooting" is [`super::SimulatedBoot::simulate_boot`], i.e. [`super::select::boot_attempt`].

use std::path::{Path, PathBuf};

use super::vars::EnvVars;
use super::{CurrentSlotSource, EnvBootControl, EnvStore};
use crate::block::file::replace_file;
use crate::error::BootError;

const BACKEND: &str = "file";
const HEADER: &str = "# Halyard boot environment (file fake)\n";

/// An environment kept in a text file.
#[derive(Debug)]
pub struct FileEnv {
    path: PathBuf,
}

impl FileEnv {
    /// Use `path`; a missing file reads as an empty environment (factory defaults).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// A [`super::BootControl`] over a file at `path`, current slot from the environment.
    pub fn boot_control(path: impl Into<PathBuf>) -> EnvBootControl<FileEnv> {
        EnvBootControl::new(Self::new(path), CurrentSlotSource::Env)
    }
}

impl EnvStore for FileEnv {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn location(&self) -> &Path {
        &self.path
    }

    fn load(&mut self) -> Result<EnvVars, BootError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(EnvVars::new()),
            Err(source) => {
                return Err(BootError::Io {
                    backend: BACKEND,
                    path: self.path.clone(),
                    op: "read",
                    source,
                });
            }
        };
        let mut vars = EnvVars::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.split_once('=') else {
                let reason = format!("line without '=': {line:?}");
                return Err(BootError::Corrupt {
                    backend: BACKEND,
                    path: self.path.clone(),
                    reason,
                });
            };
            vars.set(name, value);
        }
        Ok(vars)
    }

    fn store(&mut self, vars: &EnvVars) -> Result<(), BootError> {
        let mut text = String::from(HEADER);
        for (name, value) in vars.iter() {
            if name.is_empty() || name.starts_with('#') || name.contains(['=', '\n']) || value.contains('\n')
            {
                return Err(BootError::InvalidVariable {
                    backend: BACKEND,
                    path: self.path.clone(),
                    key: name.to_owned(),
                    reason: "names without '=' or newline, values without newline",
                });
            }
            text.push_str(&format!("{name}={value}\n"));
        }
        replace_file(&self.path, text.as_bytes()).map_err(|source| BootError::Io {
            backend: BACKEND,
            path: self.path.clone(),
            op: "replace",
            source,
        })
    }
}
