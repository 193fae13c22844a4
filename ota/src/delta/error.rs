//! Errors of the delta engine: one variant per way a patch or its inputs can be wrong.

use std::fmt;

/// A SHA-256 digest, printed as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Everything that can go wrong while making, reading or applying a patch.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The patch does not start with the delta magic.
    #[error("not a Halyard delta patch (bad magic)")]
    BadMagic,
    /// The patch uses a format version this build does not read.
    #[error("unsupported delta format version {version}")]
    UnsupportedVersion {
        /// Version byte found in the header.
        version: u8,
    },
    /// The patch ended before `what` was complete.
    #[error("patch truncated while reading {what}")]
    Truncated {
        /// The part of the patch that was cut short.
        what: &'static str,
    },
    /// The source has a different size than the patch was made for.
    #[error("source size mismatch: patch expects {expected} bytes, source has {actual}")]
    SourceSizeMismatch {
        /// Size recorded in the patch header.
        expected: u64,
        /// Size of the source given to `apply`.
        actual: u64,
    },
    /// The source's SHA-256 differs from the one the patch was made for.
    #[error("source mismatch: patch expects sha256 {expected}, source has {actual}")]
    SourceMismatch {
        /// Digest recorded in the patch header.
        expected: Digest,
        /// Digest of the source given to `apply`.
        actual: Digest,
    },
    /// The rebuilt target has the wrong size.
    #[error("target size mismatch: header says {expected} bytes, patch produced {actual}")]
    TargetSizeMismatch {
        /// Size recorded in the patch header.
        expected: u64,
        /// Bytes the patch produced.
        actual: u64,
    },
    /// The rebuilt target's SHA-256 differs from the header's.
    #[error("target hash mismatch: header says sha256 {expected}, rebuilt target has {actual}")]
    TargetHashMismatch {
        /// Digest recorded in the patch header.
        expected: Digest,
        /// Digest of the bytes written.
        actual: Digest,
    },
    /// A field of the patch is out of range or inconsistent.
    #[error("corrupt patch: {what}")]
    Corrupt {
        /// What was wrong.
        what: &'static str,
    },
    /// A length in the patch exceeds a documented limit.
    #[error("patch exceeds limit: {what} is {value}, limit {limit}")]
    LimitExceeded {
        /// The field that is too large.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// The options given to `diff` are invalid.
    #[error("invalid diff options: {what}")]
    InvalidOptions {
        /// What is wrong with them.
        what: &'static str,
    },
    /// An input is too large for this engine (inputs are limited to 2 GiB - 1).
    #[error("input too large: {what} is {size} bytes")]
    InputTooLarge {
        /// Which input.
        what: &'static str,
        /// Its size.
        size: u64,
    },
    /// Reading the source, reading the patch or writing the output failed.
    #[error("i/o error while {context}")]
    Io {
        /// What the engine was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl DeltaError {
    /// Wraps an I/O error with what the engine was doing.
    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io { context, source }
    }
}
