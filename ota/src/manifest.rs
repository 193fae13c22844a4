//! The bundle manifest: what a bundle installs, for which product, and the digests that bind its payloads.
//!
//! It is stored in the bundle as canonical JSON ([`crate::canonical`]): a manifest that does not re-encode
//! to exactly its own bytes is rejected, so one manifest has one byte form and one digest. Parse it only
//! after its signatures have been checked ([`crate::bundle::reader`] does this).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::canonical;
use crate::hash::Sha256Digest;

/// Errors about a manifest's content.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or not the manifest's shape (unknown fields are rejected).
    #[error("malformed manifest: {reason}")]
    Malformed {
        /// What serde said.
        reason: String,
    },
    /// Valid, but not in canonical form.
    #[error("manifest is not canonical JSON (sorted keys, no whitespace)")]
    NotCanonical,
    /// A product or payload name outside `[A-Za-z0-9._-]{1,64}` (or starting with `.`/`-`).
    #[error("invalid name {name:?}: use 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// No payloads at all.
    #[error("manifest lists no payloads")]
    NoPayloads,
    /// Two payloads share a name.
    #[error("payload name {name} appears twice")]
    DuplicatePayload {
        /// The name.
        name: Name,
    },
    /// `kind`, `encoding` and `source` do not agree (full+raw without source, delta+halyard-delta with).
    #[error(
        "payload {name}: kind {kind:?} with encoding {encoding:?} and source present={has_source} is inconsistent"
    )]
    InconsistentPayload {
        /// The payload.
        name: Name,
        /// Its kind.
        kind: PayloadKind,
        /// Its encoding.
        encoding: Encoding,
        /// Whether it names a source.
        has_source: bool,
    },
    /// A full payload whose target differs from the payload itself.
    #[error("full payload {name}: target {{size, sha256}} must equal the payload's own")]
    FullTargetMismatch {
        /// The payload.
        name: Name,
    },
}

/// A validated product or payload name: 1-64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
/// Safe to use as a file name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let valid = (1..=64).contains(&s.len()) && s.chars().all(ok_char) && !s.starts_with(['.', '-']);
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(ManifestError::InvalidName {
                name: s.chars().take(80).collect(),
            })
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// The manifest's `type` tag (keeps a manifest from being mistaken for a root and vice versa).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManifestType {
    /// `"manifest"`.
    #[serde(rename = "manifest")]
    Manifest,
}

/// Whether a payload is a whole image or a delta against a source image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// The payload is the target image.
    Full,
    /// The payload is a patch from `source` to `target`.
    Delta,
}

/// How the payload bytes are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// The bytes are the image (only with `full`).
    Raw,
    /// A `halyard_ota::delta` patch (only with `delta`).
    HalyardDelta,
}

/// An image identified by size and digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the image.
    pub sha256: Sha256Digest,
}

/// The image a delta applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    /// Release version of the source image.
    pub version: semver::Version,
    /// SHA-256 of the source image (compared with the device's active slot).
    pub sha256: Sha256Digest,
}

/// One payload, stored in the bundle in manifest order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// Name (e.g. `rootfs`), unique within the manifest.
    pub name: Name,
    /// Full image or delta.
    pub kind: PayloadKind,
    /// Byte encoding.
    pub encoding: Encoding,
    /// Payload size in the bundle.
    pub size: u64,
    /// SHA-256 of the payload bytes.
    pub sha256: Sha256Digest,
    /// The image the payload produces.
    pub target: ImageRef,
    /// For deltas: the image the patch applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
}

/// The manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `manifest`.
    #[serde(rename = "type")]
    pub kind: ManifestType,
    /// Compatible hardware class.
    pub product: Name,
    /// Release version.
    pub version: semver::Version,
    /// Monotonic: a device refuses anything lower than what it has committed.
    pub security_version: u64,
    /// Build time.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// After this instant the bundle is refused.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    /// Payloads in bundle order.
    pub payloads: Vec<Payload>,
}

impl Payload {
    /// A full payload: the image itself, `size` bytes with digest `sha256`.
    pub fn full(name: Name, size: u64, sha256: Sha256Digest) -> Self {
        Self {
            name,
            kind: PayloadKind::Full,
            encoding: Encoding::Raw,
            size,
            sha256,
            target: ImageRef { size, sha256 },
            source: None,
        }
    }

    /// A delta payload of `patch` bytes that turns `source` into `target`.
    pub fn delta(name: Name, patch: ImageRef, target: ImageRef, source: SourceRef) -> Self {
        Self {
            name,
            kind: PayloadKind::Delta,
            encoding: Encoding::HalyardDelta,
            size: patch.size,
            sha256: patch.sha256,
            target,
            source: Some(source),
        }
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let consistent = match self.kind {
            PayloadKind::Full => self.encoding == Encoding::Raw && self.source.is_none(),
            PayloadKind::Delta => self.encoding == Encoding::HalyardDelta && self.source.is_some(),
        };
        if !consistent {
            return Err(ManifestError::InconsistentPayload {
                name: self.name.clone(),
                kind: self.kind,
                encoding: self.encoding,
                has_source: self.source.is_some(),
            });
        }
        let own = ImageRef {
            size: self.size,
            sha256: self.sha256,
        };
        if self.kind == PayloadKind::Full && self.target != own {
            return Err(ManifestError::FullTargetMismatch {
                name: self.name.clone(),
            });
        }
        Ok(())
    }
}

impl Manifest {
    /// A manifest with the given identity and payloads (validated).
    pub fn new(
        product: Name,
        version: semver::Version,
        security_version: u64,
        created: OffsetDateTime,
        payloads: Vec<Payload>,
    ) -> Result<Self, ManifestError> {
        let manifest = Self {
            kind: ManifestType::Manifest,
            product,
            version,
            security_version,
            created,
            expires: None,
            payloads,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks payload consistency and name uniqueness.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.payloads.is_empty() {
            return Err(ManifestError::NoPayloads);
        }
        let mut seen = BTreeSet::new();
        for payload in &self.payloads {
            payload.validate()?;
            if !seen.insert(&payload.name) {
                return Err(ManifestError::DuplicatePayload {
                    name: payload.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Canonical JSON bytes (what is signed and stored).
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        canonical::to_vec(self)
            .expect("a Manifest always serialises: no maps with non-string keys, no floats")
    }

    /// Parses canonical bytes; rejects unknown fields, invalid content and non-canonical encodings.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        let manifest: Self = serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed {
            reason: e.to_string(),
        })?;
        manifest.validate()?;
        if manifest.to_canonical_bytes() != bytes {
            return Err(ManifestError::NotCanonical);
        }
        Ok(manifest)
    }

    /// The payload named `name`.
    pub fn payload(&self, name: &str) -> Option<&Payload> {
        self.payloads.iter().find(|p| p.name.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        s.parse().expect("valid test name")
    }

    fn sample() -> Manifest {
        let digest = Sha256Digest::of(b"image");
        let created = OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("in range");
        Manifest::new(
            name("demo-box"),
            semver::Version::new(1, 2, 3),
            4,
            created,
            vec![Payload::full(name("rootfs"), 5, digest)],
        )
        .expect("valid sample")
    }

    #[test]
    fn canonical_bytes_are_stable_and_parse_back() {
        let m = sample();
        let bytes = m.to_canonical_bytes();
        assert!(bytes.starts_with(br#"{"created":"2026-05-28T20:26:40Z","payloads":[{"encoding":"raw""#));
        assert_eq!(Manifest::from_canonical_bytes(&bytes).expect("round trip"), m);
    }

    #[test]
    fn non_canonical_and_unknown_fields_are_rejected() {
        let text = String::from_utf8(sample().to_canonical_bytes()).expect("UTF-8");
        let spaced = text.replacen(',', ", ", 1);
        assert!(matches!(
            Manifest::from_canonical_bytes(spaced.as_bytes()),
            Err(ManifestError::NotCanonical)
        ));
        let extra = text.replacen('{', r#"{"aaa":1,"#, 1);
        assert!(matches!(
            Manifest::from_canonical_bytes(extra.as_bytes()),
            Err(ManifestError::Malformed { .. })
        ));
    }

    #[test]
    fn names_are_validated() {
        for bad in ["", ".hidden", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(bad.parse::<Name>().is_err(), "{bad:?} accepted");
        }
        assert!("rootfs_v2.img-1".parse::<Name>().is_ok());
    }

    #[test]
    fn inconsistent_payloads_are_rejected() {
        let mut m = sample();
        m.payloads[0].kind = PayloadKind::Delta;
        assert!(matches!(
            m.validate(),
            Err(ManifestError::InconsistentPayload { .. })
        ));
        let mut m = sample();
        m.payloads[0].target.size = 6;
        assert!(matches!(
            m.validate(),
            Err(ManifestError::FullTargetMismatch { .. })
        ));
        let mut m = sample();
        m.payloads.push(m.payloads[0].clone());
        assert!(matches!(
            m.validate(),
            Err(ManifestError::DuplicatePayload { .. })
        ));
    }
}
