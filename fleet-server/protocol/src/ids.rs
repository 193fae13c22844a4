//! Validated identifiers. Each becomes part of an MQTT topic or a URL, so each is checked on construction
//! and on deserialization: no `/`, `+`, `#`, whitespace or empty strings can reach a topic.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256 as Sha256Hasher};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("device id {value:?} is invalid: {why}")]
    DeviceId { value: String, why: &'static str },
    #[error("sha256 digest {value:?} is invalid: expected 64 lowercase hex characters")]
    Sha256 { value: String },
    #[error("slot {value:?} is invalid: expected \"a\" or \"b\"")]
    Slot { value: String },
}

/// A device's identity on the wire: 1–64 characters of `[a-z0-9-]`, not starting with `-`.
///
/// Devices derive it from their identity key with [`DeviceId::from_public_key`], so it is stable for the
/// life of the key and needs no coordination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(String);

impl DeviceId {
    pub const MAX_LEN: usize = 64;

    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        let why = if value.is_empty() {
            Some("empty")
        } else if value.len() > Self::MAX_LEN {
            Some("longer than 64 characters")
        } else if value.starts_with('-') {
            Some("starts with '-'")
        } else if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Some("only a-z, 0-9 and '-' are allowed")
        } else {
            None
        };
        match why {
            Some(why) => Err(IdError::DeviceId { value, why }),
            None => Ok(Self(value)),
        }
    }

    /// `dev-` followed by the first 16 bytes of SHA-256 of the raw Ed25519 public key, in hex.
    pub fn from_public_key(public_key: &[u8; 32]) -> Self {
        let digest = Sha256Hasher::digest(public_key);
        Self(format!("dev-{}", hex::encode(&digest[..16])))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest, written as 64 lowercase hex characters on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256Hasher::digest(data).into())
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        let bad = || IdError::Sha256 {
            value: value.to_owned(),
        };
        if value.len() != 64 || value.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(value, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// One of the two root slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
        }
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        match value {
            "a" => Ok(Self::A),
            "b" => Ok(Self::B),
            _ => Err(IdError::Slot {
                value: value.to_owned(),
            }),
        }
    }
}

macro_rules! string_serde {
    ($ty:ty, $to:expr, $from:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&$to(self))
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $from(raw.as_str()).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(DeviceId, |v: &DeviceId| v.0.clone(), DeviceId::new);
string_serde!(Sha256, |v: &Sha256| v.to_hex(), Sha256::parse);
string_serde!(Slot, |v: &Slot| v.as_str().to_owned(), Slot::parse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_that_could_escape_a_topic_are_refused() {
        for bad in ["", "a/b", "a+", "#", "UPPER", "-lead", "sp ace", &"x".repeat(65)] {
            assert!(DeviceId::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["pos-1", "dev-00ff", "a", &"x".repeat(64)] {
            assert!(DeviceId::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn device_id_from_key_is_stable_and_valid() {
        let id = DeviceId::from_public_key(&[7u8; 32]);
        assert_eq!(id, DeviceId::from_public_key(&[7u8; 32]));
        assert_ne!(id, DeviceId::from_public_key(&[8u8; 32]));
        assert_eq!(DeviceId::new(id.as_str()), Ok(id.clone()));
        assert_eq!(id.as_str().len(), 4 + 32);
    }

    #[test]
    fn sha256_parse_is_strict() {
        let h = Sha256::of(b"abc");
        assert_eq!(Sha256::parse(&h.to_hex()), Ok(h));
        assert!(Sha256::parse(&h.to_hex().to_uppercase()).is_err());
        assert!(Sha256::parse(&h.to_hex()[1..]).is_err());
        assert!(Sha256::parse(&"g".repeat(64)).is_err());
    }
}
