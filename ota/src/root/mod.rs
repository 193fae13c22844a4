//! TUF-style trust root (`root.json`): which keys may sign releases, and which may replace the root.
//!
//! File shape: `{"signed": {...}, "signatures": [{"keyid", "sig"}]}`. Signatures cover the canonical JSON
//! (see [`crate::canonical`]) of the `signed` object. The signed part holds `type` (`"root"`),
//! `spec_version`, `version`, `expires`, `keys` (key id → Ed25519 public key) and `roles` (`root`,
//! `release`), each a key id list and a threshold.
//!
//! Rules ([`TrustedRoot`]):
//! - a root is trusted on its own (shipped in the image) only when a threshold of its own `root` keys signed
//!   it and it has not expired;
//! - a new root replaces a trusted one only when its version is exactly one more and a threshold of the
//!   OLD root's `root` keys AND of its own `root` keys signed it, and it has not expired. Release-key
//!   rotation is done by issuing such a new root.
//!
//! Errors (`RootError`, `SignatureFailure`) live in `error.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tracing::debug;

use crate::canonical;
use crate::keys::{KeyError, KeyId, PrivateKey, PublicKey, SignatureEntry};

mod error;
use crate::limits::Limits;
pub use error::{RootError, SignatureFailure};

/// Value of the `type` field of a root.
pub const ROOT_TYPE: &str = "root";
/// The root format version this code understands.
pub const SPEC_VERSION: u32 = 1;

/// The two roles of a trust root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleName {
    /// Signs new roots.
    Root,
    /// Signs bundle manifests.
    Release,
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Root => "root",
            Self::Release => "release",
        })
    }
}

/// Key type tag in `root.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// Ed25519 (the only one).
    Ed25519,
}

/// A public key entry: `{"keytype": "ed25519", "public": "<64 hex chars: raw point>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Always `ed25519`.
    pub keytype: KeyType,
    /// Raw 32-byte public point, hex.
    pub public: String,
}

impl KeyEntry {
    /// Entry for `key`.
    pub fn new(key: &PublicKey) -> Self {
        Self {
            keytype: KeyType::Ed25519,
            public: hex::encode(key.to_raw()),
        }
    }

    /// Decodes the public key, checking it against the id it is listed under.
    pub fn decode(&self, claimed: &KeyId) -> Result<PublicKey, RootError> {
        let mut raw = [0u8; 32];
        hex::decode_to_slice(&self.public, &mut raw).map_err(|e| RootError::BadKey {
            key_id: *claimed,
            source: KeyError::PublicKey {
                reason: e.to_string(),
            },
        })?;
        let key = PublicKey::from_raw(&raw).map_err(|source| RootError::BadKey {
            key_id: *claimed,
            source,
        })?;
        if key.id() != *claimed {
            return Err(RootError::KeyIdMismatch {
                claimed: *claimed,
                actual: key.id(),
            });
        }
        Ok(key)
    }
}

/// A role: the keys allowed to sign for it and how many must.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Key ids of the role (sorted, distinct).
    pub keyids: BTreeSet<KeyId>,
    /// Distinct valid signatures needed.
    pub threshold: u32,
}

/// The two roles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// May sign new roots.
    pub root: Role,
    /// May sign bundles.
    pub release: Role,
}

/// The signed part of a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSigned {
    /// Always `root`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version ([`SPEC_VERSION`]).
    pub spec_version: u32,
    /// Root version, starting at 1, +1 per rotation.
    pub version: u64,
    /// After this instant the root is no longer trusted.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// Key id → public key.
    pub keys: BTreeMap<KeyId, KeyEntry>,
    /// Role definitions.
    pub roles: Roles,
}

/// A `root.json` file: the signed part and its signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootFile {
    /// What is signed.
    pub signed: RootSigned,
    /// Signatures over the canonical JSON of `signed`.
    pub signatures: Vec<SignatureEntry>,
}

impl RootSigned {
    /// A version-1 root from role key lists. Keys are deduplicated; the result is validated.
    pub fn new(
        expires: OffsetDateTime,
        root: (&[PublicKey], u32),
        release: (&[PublicKey], u32),
    ) -> Result<Self, RootError> {
        let mut keys = BTreeMap::new();
        let mut role = |(list, threshold): (&[PublicKey], u32)| {
            for key in list {
                keys.insert(key.id(), KeyEntry::new(key));
            }
            Role {
                keyids: list.iter().map(PublicKey::id).collect(),
                threshold,
            }
        };
        let roles = Roles {
            root: role(root),
            release: role(release),
        };
        let signed = Self {
            kind: ROOT_TYPE.to_owned(),
            spec_version: SPEC_VERSION,
            version: 1,
            expires: expires.to_offset(time::UtcOffset::UTC),
            keys,
            roles,
        };
        signed.validate()?;
        Ok(signed)
    }

    /// The canonical JSON bytes that signatures cover.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical::to_vec(self).expect("a RootSigned always serialises: string map keys, no floats")
    }

    /// Checks type, spec version, thresholds and key references.
    pub fn validate(&self) -> Result<(), RootError> {
        if self.kind != ROOT_TYPE {
            return Err(RootError::WrongType {
                found: self.kind.clone(),
            });
        }
        if self.spec_version != SPEC_VERSION {
            return Err(RootError::UnsupportedSpec {
                found: self.spec_version,
            });
        }
        for (id, entry) in &self.keys {
            entry.decode(id)?;
        }
        for (name, role) in [
            (RoleName::Root, &self.roles.root),
            (RoleName::Release, &self.roles.release),
        ] {
            let keys = role.keyids.len();
            if role.threshold == 0 || role.threshold as usize > keys {
                return Err(RootError::InvalidThreshold {
                    role: name,
                    threshold: role.threshold,
                    keys,
                });
            }
            if let Some(missing) = role.keyids.iter().find(|id| !self.keys.contains_key(id)) {
                return Err(RootError::MissingKey {
                    role: name,
                    key_id: *missing,
                });
            }
        }
        Ok(())
    }

    /// The role definition for `name`.
    pub fn role(&self, name: RoleName) -> &Role {
        match name {
            RoleName::Root => &self.roles.root,
            RoleName::Release => &self.roles.release,
        }
    }

    /// Checks that `signatures` over `message` meet `name`'s threshold; returns the counted signers.
    ///
    /// Signatures from keys outside the role are ignored, unless no role key signed at all
    /// (then [`SignatureFailure::UnknownKey`]); any invalid signature by a role key is an error even when
    /// the threshold is otherwise met; a key counts once however often it signed.
    pub fn check_signatures(
        &self,
        name: RoleName,
        message: &[u8],
        signatures: &[SignatureEntry],
    ) -> Result<Vec<KeyId>, SignatureFailure> {
        let role = self.role(name);
        let mut valid = BTreeSet::new();
        let mut first_unknown = None;
        for entry in signatures {
            let key = role
                .keyids
                .contains(&entry.keyid)
                .then(|| self.keys.get(&entry.keyid))
                .flatten()
                .and_then(|e| e.decode(&entry.keyid).ok());
            let Some(key) = key else {
                first_unknown.get_or_insert(entry.keyid);
                continue;
            };
            key.verify(message, &entry.sig)
                .map_err(|_| SignatureFailure::BadSignature {
                    key_id: entry.keyid,
                    role: name,
                })?;
            valid.insert(entry.keyid);
        }
        let count = u32::try_from(valid.len()).unwrap_or(u32::MAX);
        if count >= role.threshold {
            return Ok(valid.into_iter().collect());
        }
        match first_unknown {
            Some(key_id) if valid.is_empty() => Err(SignatureFailure::UnknownKey { key_id, role: name }),
            _ => Err(SignatureFailure::ThresholdNotMet {
                role: name,
                valid: count,
                threshold: role.threshold,
            }),
        }
    }

    /// The next version: same keys and roles, version + 1, no signatures yet.
    pub fn next_version(&self, expires: OffsetDateTime) -> Self {
        Self {
            version: self.version + 1,
            expires: expires.to_offset(time::UtcOffset::UTC),
            ..self.clone()
        }
    }

    fn check_expiry(&self, now: OffsetDateTime) -> Result<(), RootError> {
        if now >= self.expires {
            return Err(RootError::Expired {
                version: self.version,
                expires: self.expires,
                now,
            });
        }
        Ok(())
    }
}

impl RootFile {
    /// An unsigned root file.
    pub fn unsigned(signed: RootSigned) -> Self {
        Self {
            signed,
            signatures: Vec::new(),
        }
    }

    /// Adds (or replaces) `key`'s signature over the signed part.
    pub fn sign(&mut self, key: &PrivateKey) {
        let entry = SignatureEntry::sign(key, &self.signed.canonical_bytes());
        self.signatures.retain(|s| s.keyid != entry.keyid);
        self.signatures.push(entry);
    }

    /// Pretty JSON for the file on disk (signatures do not depend on this layout).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self)
            .expect("a RootFile always serialises: string map keys, no floats");
        out.push(b'\n');
        out
    }

    /// Parses a root file without checking signatures (for inspection and signing).
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Self, RootError> {
        parse_checked(bytes, limits).map(|(file, _)| file)
    }
}

/// Parses, size-caps and validates a root file; also returns the canonical bytes of the signed part as
/// it appeared in the file (so unknown fields cannot be dropped silently before verification).
fn parse_checked(bytes: &[u8], limits: &Limits) -> Result<(RootFile, Vec<u8>), RootError> {
    if bytes.len() > limits.max_root_bytes {
        return Err(RootError::TooLarge {
            size: bytes.len(),
            limit: limits.max_root_bytes,
        });
    }
    let malformed = |e: serde_json::Error| RootError::Malformed {
        reason: e.to_string(),
    };
    let value: Value = serde_json::from_slice(bytes).map_err(malformed)?;
    let signed_value = value.get("signed").ok_or_else(|| RootError::Malformed {
        reason: "missing \"signed\"".to_owned(),
    })?;
    let message = canonical::value_to_vec(signed_value).map_err(malformed)?;
    let file: RootFile = serde_json::from_value(value).map_err(malformed)?;
    file.signed.validate()?;
    Ok((file, message))
}

/// A root whose signatures and expiry were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedRoot {
    signed: RootSigned,
}

impl TrustedRoot {
    /// Trusts a root on its own: it must be signed by a threshold of its own root keys and not expired.
    pub fn from_bytes(bytes: &[u8], now: OffsetDateTime, limits: &Limits) -> Result<Self, RootError> {
        let (file, message) = parse_checked(bytes, limits)?;
        let signed = file.signed;
        signed
            .check_signatures(RoleName::Root, &message, &file.signatures)
            .map_err(|source| RootError::Signatures {
                version: signed.version,
                by: "itself".to_owned(),
                source,
            })?;
        signed.check_expiry(now)?;
        debug!(version = signed.version, "trust root loaded");
        Ok(Self { signed })
    }

    /// Accepts `bytes` as the next root: version + 1, signed by a threshold of this root's root keys
    /// and of its own root keys, not expired. Returns the new trusted root.
    pub fn rotate(&self, bytes: &[u8], now: OffsetDateTime, limits: &Limits) -> Result<Self, RootError> {
        let (file, message) = parse_checked(bytes, limits)?;
        let new = file.signed;
        if new.version != self.signed.version + 1 {
            return Err(RootError::VersionNotNext {
                current: self.signed.version,
                found: new.version,
            });
        }
        let check = |root: &RootSigned, by: String| {
            root.check_signatures(RoleName::Root, &message, &file.signatures)
                .map_err(|source| RootError::Signatures {
                    version: new.version,
                    by,
                    source,
                })
        };
        check(
            &self.signed,
            format!("previous root version {}", self.signed.version),
        )?;
        check(&new, "itself".to_owned())?;
        new.check_expiry(now)?;
        debug!(from = self.signed.version, to = new.version, "trust root rotated");
        Ok(Self { signed: new })
    }

    /// The verified content.
    pub fn signed(&self) -> &RootSigned {
        &self.signed
    }

    /// Errors when the root has expired at `now`.
    pub fn ensure_current(&self, now: OffsetDateTime) -> Result<(), RootError> {
        self.signed.check_expiry(now)
    }
}
