//! The device's identity: an Ed25519 key created on first start in the data directory (PKCS#8 PEM,
//! mode 0600, openssl-compatible through `halyard_ota::keys`), the [`DeviceId`] derived from it, and a
//! persisted sequence counter for signed envelopes that never goes backwards.
//!
//! The counter reserves numbers in blocks: the file holds the first number not yet handed out by any
//! run, so a restart (or a power cut) skips at most one block but never reuses a number. Gaps are fine
//! for receivers, which only require strictly increasing numbers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use halyard_ota::keys::{KeyError, PrivateKey};
use halyard_protocol::DeviceId;

use crate::durable::FileError;
use crate::faults::CrashPoints;
use crate::files::{DiskFiles, Files};

/// Key file name in the data directory.
pub const KEY_FILE: &str = "identity.pem";
/// Sequence counter file name in the data directory.
pub const SEQ_FILE: &str = "seq";
/// Numbers reserved per counter write.
pub const SEQ_BLOCK: u64 = 1024;

/// The identity could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// File access failed.
    #[error("identity: {0}")]
    File(#[from] FileError),
    /// The key file is not a usable Ed25519 key.
    #[error("identity key {path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: KeyError,
    },
    /// The counter file does not hold a number.
    #[error("sequence counter {path} is corrupt: {content:?}")]
    Counter {
        /// The file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
}

/// The device key and its id.
#[derive(Debug, Clone)]
pub struct Identity {
    key: PrivateKey,
    id: DeviceId,
}

impl Identity {
    /// Load the key from `dir`, creating it on first start (atomically: a power cut leaves no key or
    /// a whole one).
    pub fn load_or_create(dir: &Path, crash: &dyn CrashPoints) -> Result<Self, IdentityError> {
        Self::load_or_create_in(&DiskFiles, dir, crash)
    }

    /// [`Identity::load_or_create`] with the key in `dir` of `files`.
    pub fn load_or_create_in(
        files: &dyn Files,
        dir: &Path,
        crash: &dyn CrashPoints,
    ) -> Result<Self, IdentityError> {
        let path = dir.join(KEY_FILE);
        let key_err = |source| IdentityError::Key {
            path: path.clone(),
            source,
        };
        let key = match files.read(&path)? {
            Some(bytes) => PrivateKey::from_pem(&String::from_utf8_lossy(&bytes)).map_err(key_err)?,
            None => {
                let key = PrivateKey::generate().map_err(key_err)?;
                files.write_atomic(&path, key.to_pem().as_bytes(), 0o600, crash)?;
                tracing::info!(path = %path.display(), "device identity key created");
                key
            }
        };
        let id = DeviceId::from_public_key(&key.public().to_raw());
        Ok(Self { key, id })
    }

    /// The device id (`dev-` + 32 hex digits).
    pub fn device_id(&self) -> &DeviceId {
        &self.id
    }

    /// The key, for signing envelopes.
    pub fn signing_key(&self) -> SigningKey {
        self.key.to_signing_key()
    }

    /// The raw public key (registered at enrollment).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public().to_raw()
    }
}

/// Strictly increasing sequence numbers that survive restarts.
#[derive(Debug)]
pub struct SeqCounter {
    path: PathBuf,
    files: Arc<dyn Files>,
    next: u64,
    reserved: u64,
    crash: Arc<dyn CrashPoints>,
}

impl SeqCounter {
    /// The counter in `dir` (starting at 1 on a fresh device).
    pub fn open(dir: &Path, crash: Arc<dyn CrashPoints>) -> Result<Self, IdentityError> {
        Self::open_in(DiskFiles::shared(), dir, crash)
    }

    /// [`SeqCounter::open`] with the counter in `dir` of `files`.
    pub fn open_in(
        files: Arc<dyn Files>,
        dir: &Path,
        crash: Arc<dyn CrashPoints>,
    ) -> Result<Self, IdentityError> {
        let path = dir.join(SEQ_FILE);
        let next = match files.read(&path)? {
            None => 1,
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes).trim().to_owned();
                text.parse().map_err(|_| IdentityError::Counter {
                    path: path.clone(),
                    content: text,
                })?
            }
        };
        Ok(Self {
            path,
            files,
            next,
            reserved: next,
            crash,
        })
    }

    /// `n` consecutive numbers (at least one); returns the last. For a message that numbers each of
    /// its parts (the events of an `events` envelope).
    pub fn next_seqs(&mut self, n: u64) -> Result<u64, IdentityError> {
        let mut last = self.next_seq()?;
        for _ in 1..n {
            last = self.next_seq()?;
        }
        Ok(last)
    }

    /// The next number; persists a new reservation when the current block is used up.
    pub fn next_seq(&mut self) -> Result<u64, IdentityError> {
        if self.next >= self.reserved {
            let reserved = self.next.saturating_add(SEQ_BLOCK);
            self.files.write_atomic(
                &self.path,
                reserved.to_string().as_bytes(),
                0o600,
                self.crash.as_ref(),
            )?;
            self.reserved = reserved;
        }
        let n = self.next;
        self.next += 1;
        Ok(n)
    }
}
