//! The agent's journal: one JSON [`Record`] (state machine state, what each slot holds, the committed
//! security version) replaced atomically through [`crate::durable::write_atomic`] before every side
//! effect.
//!
//! Reading: a missing journal is a first start ([`Loaded::Fresh`]). A journal that does not parse or
//! has an unknown format (media corruption: the rename protocol never exposes a torn file) is a
//! [`JournalError::Corrupt`]; [`Journal::load_or_recover`] moves it aside to `state.json.corrupt` and
//! starts from the caller's fresh record in `Failed{reason}`, so the loss is reported, not hidden.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use halyard_protocol::Slot;
use serde::{Deserialize, Serialize};

use crate::durable::FileError;
use crate::faults::CrashPoints;
use crate::files::{DiskFiles, Files};
use crate::fsm::{Image, State};

/// File name of the journal in the data directory.
pub const FILE_NAME: &str = "state.json";
/// Journal format written by this code.
pub const FORMAT: u32 = 1;

/// What each slot holds, as far as the agent wrote or verified it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotImages {
    /// Slot A.
    pub a: Option<Image>,
    /// Slot B.
    pub b: Option<Image>,
}

impl SlotImages {
    /// The image in `slot`.
    pub fn get(&self, slot: Slot) -> Option<&Image> {
        match slot {
            Slot::A => self.a.as_ref(),
            Slot::B => self.b.as_ref(),
        }
    }

    /// Record what `slot` holds.
    pub fn set(&mut self, slot: Slot, image: Option<Image>) {
        match slot {
            Slot::A => self.a = image,
            Slot::B => self.b = image,
        }
    }
}

/// Everything the journal holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The state machine's state.
    pub state: State,
    /// What each slot holds.
    pub images: SlotImages,
    /// The highest committed security version; bundles below it are refused.
    pub security_floor: u64,
}

impl Record {
    /// A first start: `Idle`, `active` holding `image`.
    pub fn fresh(active: Slot, image: Image) -> Self {
        let mut images = SlotImages::default();
        images.set(active, Some(image));
        Self {
            format: FORMAT,
            state: State::Idle,
            images,
            security_floor: 0,
        }
    }

    /// The record with `state`, keeping slot images and the floor in step with it: a slot being
    /// written holds nothing known; a staged or committed image is recorded; a commit raises the floor.
    pub fn with_state(&self, state: State) -> Self {
        let mut next = self.clone();
        match &state {
            State::Installing { update, .. } => next.images.set(update.slot, None),
            State::Staged(s) | State::Rebooting { staging: s, .. } | State::Trial { staging: s, .. } => {
                next.images.set(s.update.slot, Some(s.image.clone()));
            }
            State::Committed {
                slot,
                image,
                security_version,
                ..
            } => {
                next.images.set(*slot, Some(image.clone()));
                next.security_floor = next.security_floor.max(*security_version);
            }
            _ => {}
        }
        next.state = state;
        next
    }
}

/// The journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or replacing the file failed.
    #[error("journal: {0}")]
    File(#[from] FileError),
    /// The file exists but is not a journal this code reads.
    #[error("journal {path} is unreadable: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What [`Journal::load_or_recover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No journal: first start.
    Fresh(Record),
    /// The journal as last written.
    Found(Record),
    /// The journal was corrupt; it was moved aside and the agent starts in `Failed`.
    Recovered(Record),
}

impl Loaded {
    /// The record to start from.
    pub fn record(&self) -> &Record {
        match self {
            Self::Fresh(r) | Self::Found(r) | Self::Recovered(r) => r,
        }
    }
}

/// The journal file in a data directory.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
    files: Arc<dyn Files>,
    crash: Arc<dyn CrashPoints>,
}

impl Journal {
    /// The journal in `dir` on disk, with crash points `crash`.
    pub fn new(dir: &Path, crash: Arc<dyn CrashPoints>) -> Self {
        Self::in_files(DiskFiles::shared(), dir, crash)
    }

    /// The journal in `dir` of `files`.
    pub fn in_files(files: Arc<dyn Files>, dir: &Path, crash: Arc<dyn CrashPoints>) -> Self {
        Self {
            path: dir.join(FILE_NAME),
            files,
            crash,
        }
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the journal: `Ok(None)` when there is none.
    pub fn load(&self) -> Result<Option<Record>, JournalError> {
        let Some(bytes) = self.files.read(&self.path)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| JournalError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if record.format != FORMAT {
            return Err(corrupt(format!(
                "format {} (this agent reads {FORMAT})",
                record.format
            )));
        }
        Ok(Some(record))
    }

    /// Read the journal, starting from `fresh` when there is none and recovering from corruption.
    pub fn load_or_recover(&self, fresh: impl FnOnce() -> Record) -> Result<Loaded, JournalError> {
        match self.load() {
            Ok(Some(record)) => Ok(Loaded::Found(record)),
            Ok(None) => Ok(Loaded::Fresh(fresh())),
            Err(JournalError::Corrupt { reason, .. }) => {
                let aside = self.path.with_extension("json.corrupt");
                self.files.rename(&self.path, &aside)?;
                tracing::error!(path = %self.path.display(), %reason, "journal unreadable, moved aside");
                let state = State::Failed {
                    version: None,
                    rollout: None,
                    reason: format!("journal unreadable: {reason}"),
                };
                Ok(Loaded::Recovered(fresh().with_state(state)))
            }
            Err(e) => Err(e),
        }
    }

    /// Replace the journal with `record`, durably.
    pub fn store(&self, record: &Record) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| JournalError::Corrupt {
            path: self.path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        self.files
            .write_atomic(&self.path, &bytes, 0o600, self.crash.as_ref())?;
        tracing::debug!(state = record.state.name(), "journal written");
        Ok(())
    }
}
