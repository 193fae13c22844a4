//! The bundle file: one streamable file holding a signed manifest and its payloads.
//!
//! Layout (all integers big-endian; details in `docs/bundle-format.md`):
//! `magic "HALYBNDL"` · `u16 format version` · `u32 manifest length` · manifest (canonical JSON) ·
//! `u16 signature count` · per signature `[32] key id` `u16 length` `signature` · payloads in manifest order.
//!
//! - [`format`](mod@format): the header codec (unverified); [`writer`]: build, sign and re-sign bundles;
//! - [`reader`]: open → signatures → manifest → policy → verified payload streams;
//! - [`install`]: turn one verified payload (full or delta) into a target image with its digest checked.

pub mod format;
pub mod install;
pub mod reader;
pub mod writer;

use time::OffsetDateTime;

use crate::delta::DeltaError;
use crate::hash::Sha256Digest;
use crate::keys::KeyId;
use crate::manifest::{ManifestError, Name};
use crate::root::RootError;

pub use format::{BundleHeader, FORMAT_VERSION, MAGIC};
pub use install::{InstallStats, install_from_external_delta, install_payload};
pub use reader::{PayloadReader, VerifiedBundle, open};
pub use writer::{PayloadSource, add_signatures, sign_manifest, write_bundle};

/// What the device (or operator) requires of a bundle, checked after signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Required product; `None` accepts any (tools only: a device always sets it).
    pub product: Option<Name>,
    /// The security version the device has committed; lower bundles are refused.
    pub min_security_version: u64,
    /// The time to check expiry against.
    pub now: OffsetDateTime,
    /// Digest of the device's active slot; delta payloads for another source are refused. `None` skips
    /// the check (tools without a source image).
    pub active_source_sha256: Option<Sha256Digest>,
}

/// Every way a bundle can be rejected, plus I/O failures.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing failed for a reason other than the bundle's content.
    #[error("I/O error: {source}")]
    Io {
        /// The error.
        #[from]
        source: std::io::Error,
    },
    /// The file does not start with the bundle magic.
    #[error("not a Halyard bundle (magic {found:02x?})")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 8],
    },
    /// A format version this code does not read.
    #[error("bundle format version {found} is not supported (expected {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The file ends inside a section.
    #[error("bundle truncated in {section} at byte {offset}")]
    Truncated {
        /// Which part was being read.
        section: String,
        /// File offset where the data ran out.
        offset: u64,
    },
    /// The manifest length exceeds the limit.
    #[error("manifest is {size} bytes, limit is {limit}")]
    ManifestTooLarge {
        /// Declared size.
        size: u32,
        /// The limit.
        limit: u32,
    },
    /// Too many signatures.
    #[error("{count} signatures, limit is {limit}")]
    TooManySignatures {
        /// Declared count.
        count: u16,
        /// The limit.
        limit: u16,
    },
    /// One signature is larger than the limit.
    #[error("signature by {key_id} is {size} bytes, limit is {limit}")]
    SignatureTooLarge {
        /// The signer.
        key_id: KeyId,
        /// Declared size.
        size: u16,
        /// The limit.
        limit: u16,
    },
    /// The trust root itself is not usable (e.g. expired).
    #[error("trust root: {source}")]
    Root {
        /// Why.
        #[from]
        source: RootError,
    },
    /// No signature came from a release key.
    #[error("bundle is signed only by keys that are not release keys (first: {key_id})")]
    UnknownKey {
        /// The first signer.
        key_id: KeyId,
    },
    /// A signature by a release key does not verify.
    #[error("signature by release key {key_id} does not verify")]
    BadSignature {
        /// The signer.
        key_id: KeyId,
    },
    /// Fewer valid release signatures than the threshold.
    #[error("{valid} valid release signature(s), threshold is {threshold}")]
    ThresholdNotMet {
        /// Distinct valid signatures.
        valid: u32,
        /// Required.
        threshold: u32,
    },
    /// The (signed) manifest is invalid.
    #[error("manifest: {source}")]
    Manifest {
        /// Why.
        #[from]
        source: ManifestError,
    },
    /// The bundle is for another product.
    #[error("bundle is for product {found}, this device is {expected}")]
    WrongProduct {
        /// Required.
        expected: Name,
        /// In the manifest.
        found: Name,
    },
    /// The bundle has expired.
    #[error("bundle expired at {expires} (now {now})")]
    Expired {
        /// Manifest expiry.
        expires: OffsetDateTime,
        /// Time checked.
        now: OffsetDateTime,
    },
    /// The bundle's security version is below the committed one.
    #[error("bundle security_version {found} is below the committed {committed}")]
    SecurityVersionTooLow {
        /// In the manifest.
        found: u64,
        /// Committed on the device.
        committed: u64,
    },
    /// A delta payload applies to another source image.
    #[error("delta payload {payload} applies to source {expected}, active image is {active}")]
    DeltaSourceMismatch {
        /// The payload.
        payload: Name,
        /// Source digest in the manifest.
        expected: Sha256Digest,
        /// Active image digest.
        active: Sha256Digest,
    },
    /// Too many payloads.
    #[error("{count} payloads, limit is {limit}")]
    TooManyPayloads {
        /// In the manifest.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A payload (or its target) is larger than the limit.
    #[error("payload {payload} is {size} bytes, limit is {limit}")]
    PayloadTooLarge {
        /// The payload.
        payload: Name,
        /// Declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A payload's bytes do not match the manifest digest.
    #[error("payload {payload}: sha256 {actual} does not match manifest {expected}")]
    PayloadHashMismatch {
        /// The payload.
        payload: Name,
        /// Manifest digest.
        expected: Sha256Digest,
        /// Digest of the bytes read.
        actual: Sha256Digest,
    },
    /// Bytes follow the last payload.
    #[error("unexpected data after the last payload at byte {offset}")]
    TrailingData {
        /// File offset of the first extra byte.
        offset: u64,
    },
    /// A delta payload was installed without a source image.
    #[error("delta payload {payload} needs a source image")]
    DeltaNeedsSource {
        /// The payload.
        payload: Name,
    },
    /// Applying a delta payload failed.
    #[error("delta payload {payload}: {source}")]
    Delta {
        /// The payload.
        payload: Name,
        /// Why.
        source: DeltaError,
    },
    /// The produced image does not match the manifest target.
    #[error(
        "payload {payload}: produced image {actual_size} bytes sha256 {actual}, manifest target is {expected_size} bytes sha256 {expected}"
    )]
    TargetMismatch {
        /// The payload.
        payload: Name,
        /// Target size in the manifest.
        expected_size: u64,
        /// Target digest in the manifest.
        expected: Sha256Digest,
        /// Size produced.
        actual_size: u64,
        /// Digest produced.
        actual: Sha256Digest,
    },
}

impl BundleError {
    /// True when the bundle (or its use) was refused, false for plain I/O failures.
    pub fn is_rejection(&self) -> bool {
        !matches!(self, Self::Io { .. })
    }

    /// A stable snake_case code for the variant (for logs, reports and `--json` output).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::BadMagic { .. } => "bad_magic",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::Truncated { .. } => "truncated",
            Self::ManifestTooLarge { .. } => "manifest_too_large",
            Self::TooManySignatures { .. } => "too_many_signatures",
            Self::SignatureTooLarge { .. } => "signature_too_large",
            Self::Root { .. } => "root",
            Self::UnknownKey { .. } => "unknown_key",
            Self::BadSignature { .. } => "bad_signature",
            Self::ThresholdNotMet { .. } => "threshold_not_met",
            Self::Manifest { .. } => "manifest",
            Self::WrongProduct { .. } => "wrong_product",
            Self::Expired { .. } => "expired",
            Self::SecurityVersionTooLow { .. } => "security_version_too_low",
            Self::DeltaSourceMismatch { .. } => "delta_source_mismatch",
            Self::TooManyPayloads { .. } => "too_many_payloads",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::PayloadHashMismatch { .. } => "payload_hash_mismatch",
            Self::TrailingData { .. } => "trailing_data",
            Self::DeltaNeedsSource { .. } => "delta_needs_source",
            Self::Delta { .. } => "delta",
            Self::TargetMismatch { .. } => "target_mismatch",
        }
    }

    /// Recovers a `BundleError` carried inside an `io::Error` (as payload readers return), or wraps it.
    pub fn from_io(err: std::io::Error) -> Self {
        match err.get_ref().map(|e| e.is::<Self>()) {
            Some(true) => match err.into_inner().map(|e| e.downcast::<Self>()) {
                Some(Ok(inner)) => *inner,
                _ => Self::Io {
                    source: std::io::Error::other("payload error lost while unwrapping"),
                },
            },
            _ => Self::Io { source: err },
        }
    }

    /// Wraps this error into an `io::Error` so it can cross `Read`/`Write` boundaries.
    pub fn into_io(self) -> std::io::Error {
        let kind = match &self {
            Self::Truncated { .. } => std::io::ErrorKind::UnexpectedEof,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, self)
    }
}
