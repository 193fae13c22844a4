//! Ed25519 signing keys stored the way `openssl` stores them.
//!
//! - Private keys: PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`), the form `openssl genpkey -algorithm
//!   ed25519` writes. Files are created with mode 0600.
//! - Public keys: SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), the form `openssl pkey -pubout`
//!   writes.
//! - Key id: lowercase hex SHA-256 of the SPKI DER encoding, so
//!   `openssl pkey -pubin -in k.pub -outform DER | sha256sum` gives the same id.
//! - Signatures are plain Ed25519 over the exact message bytes (what `openssl pkeyutl -sign -rawin` makes)
//!   and are checked with `verify_strict`.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::spki::{DecodePublicKey, EncodePublicKey};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{DigestParseError, Sha256Digest};

/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// Errors from reading, writing or using keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not a PKCS#8 Ed25519 private key.
    #[error("not a PKCS#8 Ed25519 private key: {reason}")]
    PrivateKey {
        /// What the decoder said.
        reason: String,
    },
    /// The text is not an SPKI Ed25519 public key.
    #[error("not an SPKI Ed25519 public key: {reason}")]
    PublicKey {
        /// What the decoder said.
        reason: String,
    },
    /// The operating system's random source failed.
    #[error("random source failed: {reason}")]
    Random {
        /// What getrandom said.
        reason: String,
    },
    /// A signature had the wrong length.
    #[error("signature for key {key_id} is {len} bytes, Ed25519 signatures are 64")]
    SignatureLength {
        /// The key the signature claims.
        key_id: KeyId,
        /// Its length.
        len: usize,
    },
    /// A signature did not verify.
    #[error("signature by key {key_id} does not verify")]
    BadSignature {
        /// The key the signature claims.
        key_id: KeyId,
    },
}

/// Identifier of a public key: SHA-256 of its SPKI DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub Sha256Digest);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl FromStr for KeyId {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Sha256Digest::deserialize(d).map(Self)
    }
}

/// One signature as stored in `root.json` (`{"keyid": .., "sig": hex}`) and in bundle files (binary).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// The key that made the signature.
    pub keyid: KeyId,
    /// The signature bytes (64 for Ed25519), hex in JSON.
    #[serde(with = "hex_bytes")]
    pub sig: Vec<u8>,
}

impl SignatureEntry {
    /// Signs `message` with `key`.
    pub fn sign(key: &PrivateKey, message: &[u8]) -> Self {
        Self {
            keyid: key.public().id(),
            sig: key.sign(message).to_vec(),
        }
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl PublicKey {
    /// From the raw 32-byte Ed25519 point.
    pub fn from_raw(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(|key| Self { key })
            .map_err(|e| KeyError::PublicKey {
                reason: e.to_string(),
            })
    }

    /// The raw 32-byte Ed25519 point.
    pub fn to_raw(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Parses `-----BEGIN PUBLIC KEY-----` PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(|key| Self { key })
            .map_err(|e| KeyError::PublicKey {
                reason: e.to_string(),
            })
    }

    /// SPKI PEM text.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("encoding a 32-byte Ed25519 key as SPKI PEM cannot fail")
    }

    /// SPKI DER bytes (44 bytes for Ed25519).
    pub fn spki_der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .expect("encoding a 32-byte Ed25519 key as SPKI DER cannot fail")
            .into_vec()
    }

    /// The key id: SHA-256 of the SPKI DER.
    pub fn id(&self) -> KeyId {
        KeyId(Sha256Digest::of(&self.spki_der()))
    }

    /// Checks `signature` over `message` with strict Ed25519 rules.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        let sig: &[u8; SIGNATURE_LEN] = signature.try_into().map_err(|_| KeyError::SignatureLength {
            key_id: self.id(),
            len: signature.len(),
        })?;
        self.key
            .verify_strict(message, &Signature::from_bytes(sig))
            .map_err(|_| KeyError::BadSignature { key_id: self.id() })
    }
}

/// An Ed25519 private key. The secret is zeroised on drop.
#[derive(Clone)]
pub struct PrivateKey {
    key: SigningKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.public().id())
    }
}

impl PrivateKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random {
            reason: e.to_string(),
        })?;
        let key = Self::from_seed(&seed);
        seed.fill(0);
        Ok(key)
    }

    /// A key from a 32-byte seed (deterministic; tests and fixtures use this).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Parses `-----BEGIN PRIVATE KEY-----` PKCS#8 PEM (v1 or v2).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem.trim())
            .map(|key| Self { key })
            .map_err(|e| KeyError::PrivateKey {
                reason: e.to_string(),
            })
    }

    /// PKCS#8 v1 PEM text, as `openssl genpkey` writes it.
    pub fn to_pem(&self) -> String {
        let bytes = KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .expect("encoding a 32-byte Ed25519 seed as PKCS#8 PEM cannot fail")
            .to_string()
    }

    /// A copy of the key for `ed25519-dalek` APIs (the agent's envelope signing).
    pub fn to_signing_key(&self) -> SigningKey {
        self.key.clone()
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// Signs `message` (pure Ed25519, deterministic).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(message).to_bytes()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a private key PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKey, KeyError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    PrivateKey::from_pem(&text)
}

/// Reads a public key from a PEM file holding either a public key or a private key.
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    if text.contains("PRIVATE KEY") {
        return PrivateKey::from_pem(&text).map(|k| k.public());
    }
    PublicKey::from_pem(&text)
}

/// Writes a private key PEM file with mode 0600; refuses to overwrite an existing file.
pub fn write_private_key(path: &Path, key: &PrivateKey) -> Result<(), KeyError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(key.to_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err(path))
}

/// Writes a public key PEM file; refuses to overwrite an existing file.
pub fn write_public_key(path: &Path, key: &PublicKey) -> Result<(), KeyError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(key.to_pem().as_bytes()).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_ids_match() {
        let key = PrivateKey::from_seed(&[7; 32]);
        let again = PrivateKey::from_pem(&key.to_pem()).expect("own PEM parses");
        assert_eq!(again.public(), key.public());
        let public = PublicKey::from_pem(&key.public().to_pem()).expect("own PEM parses");
        assert_eq!(public.id(), key.public().id());
        assert_eq!(public.spki_der().len(), 44);
    }

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let key = PrivateKey::from_seed(&[1; 32]);
        let sig = key.sign(b"manifest");
        assert!(key.public().verify(b"manifest", &sig).is_ok());
        assert!(matches!(
            key.public().verify(b"manifesT", &sig),
            Err(KeyError::BadSignature { .. })
        ));
        assert!(matches!(
            key.public().verify(b"manifest", &sig[..63]),
            Err(KeyError::SignatureLength { len: 63, .. })
        ));
    }

    #[test]
    fn generated_keys_differ() {
        let a = PrivateKey::generate().expect("getrandom works");
        let b = PrivateKey::generate().expect("getrandom works");
        assert_ne!(a.public(), b.public());
    }
}
