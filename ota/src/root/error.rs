//! Errors of the trust root: why a root or a set of signatures is not accepted.

use time::OffsetDateTime;

use super::{RoleName, SPEC_VERSION};
use crate::keys::{KeyError, KeyId};

/// Why a set of signatures does not satisfy a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureFailure {
    /// No signature came from a key of the role; the first signer is named.
    #[error("key {key_id} is not a {role} key of the trust root")]
    UnknownKey {
        /// The signer.
        key_id: KeyId,
        /// The role checked.
        role: RoleName,
    },
    /// A signature by a key of the role does not verify.
    #[error("signature by {role} key {key_id} does not verify")]
    BadSignature {
        /// The signer.
        key_id: KeyId,
        /// The role checked.
        role: RoleName,
    },
    /// Fewer distinct valid signatures than the threshold.
    #[error("{valid} valid {role} signature(s), threshold is {threshold}")]
    ThresholdNotMet {
        /// The role checked.
        role: RoleName,
        /// Distinct valid signatures found.
        valid: u32,
        /// Signatures required.
        threshold: u32,
    },
}

/// Errors about trust roots.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The root file is larger than the limit.
    #[error("root is {size} bytes, limit is {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not valid JSON or not the expected shape.
    #[error("malformed root: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The `type` field is not `root`.
    #[error("root type is {found:?}, expected \"root\"")]
    WrongType {
        /// The value found.
        found: String,
    },
    /// A spec version this code does not know.
    #[error("root spec_version {found} is not supported (expected {SPEC_VERSION})")]
    UnsupportedSpec {
        /// The value found.
        found: u32,
    },
    /// A threshold of zero or above the number of keys of the role.
    #[error("{role} threshold {threshold} is invalid for {keys} key(s)")]
    InvalidThreshold {
        /// The role.
        role: RoleName,
        /// Its threshold.
        threshold: u32,
        /// Its number of keys.
        keys: usize,
    },
    /// A role names a key the root does not list.
    #[error("{role} role names key {key_id}, which is not in keys")]
    MissingKey {
        /// The role.
        role: RoleName,
        /// The key id.
        key_id: KeyId,
    },
    /// A listed key's id is not the SHA-256 of its SPKI DER.
    #[error("key listed as {claimed} has id {actual}")]
    KeyIdMismatch {
        /// The map key.
        claimed: KeyId,
        /// The id computed from the key.
        actual: KeyId,
    },
    /// A listed key is not a valid Ed25519 point.
    #[error("key {key_id}: {source}")]
    BadKey {
        /// The map key.
        key_id: KeyId,
        /// Why it failed.
        source: KeyError,
    },
    /// Signatures do not satisfy a role (`by` says which root's role was checked).
    #[error("root version {version} signatures checked against {by}: {source}")]
    Signatures {
        /// Version of the root being verified.
        version: u64,
        /// "itself" or "previous root version N".
        by: String,
        /// What failed.
        source: SignatureFailure,
    },
    /// The root has expired.
    #[error("root version {version} expired at {expires} (now {now})")]
    Expired {
        /// Its version.
        version: u64,
        /// Its expiry.
        expires: OffsetDateTime,
        /// The time checked against.
        now: OffsetDateTime,
    },
    /// A rotation that does not go to exactly the next version.
    #[error("root version {found} cannot replace version {current}: must be {current} + 1")]
    VersionNotNext {
        /// The trusted version.
        current: u64,
        /// The offered version.
        found: u64,
    },
}
