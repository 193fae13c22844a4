//! The server's own secrets in its data directory: its Ed25519 signing key (signs every `desired`),
//! and bearer/enrollment token generation. Tokens are random 32-byte values shown once; the store
//! keeps only their SHA-256.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use halyard_ota::keys::PrivateKey;
use sha2::Digest as _;

/// Reading or creating a secret failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("server key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretError + '_ {
    move |source| SecretError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads `server-key.pem` from `dir`, creating it (mode 0600) on first start.
pub fn load_or_create_server_key(dir: &Path) -> Result<SigningKey, SecretError> {
    let path = dir.join("server-key.pem");
    if !path.exists() {
        let key = PrivateKey::generate().map_err(|e| SecretError::Random(e.to_string()))?;
        write_private(&path, key.to_pem().as_bytes())?;
        tracing::info!(path = %path.display(), "created the server signing key");
    }
    let pem = std::fs::read_to_string(&path).map_err(io(&path))?;
    SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| SecretError::Key {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The SPKI PEM of the server's public key, as devices store it.
pub fn public_pem(key: &SigningKey) -> String {
    let raw = key.verifying_key().to_bytes();
    halyard_ota::keys::PublicKey::from_raw(&raw)
        .map(|k| k.to_pem())
        .unwrap_or_default()
}

/// Writes a file readable only by the owner, durably (temp, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    write_with_mode(path, bytes, 0o600)
}

/// Writes a file with `mode` (for a new file), durably (temp, fsync, rename).
pub fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SecretError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// A fresh random token with a readable prefix (`hly_adm_...`, `hly_enr_...`).
pub fn new_token(prefix: &str) -> Result<String, SecretError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(format!("{prefix}{}", B64.encode(raw)))
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A short public id for a token (first 8 bytes of its hash), for listing and revoking.
pub fn token_id(token: &str) -> String {
    token_hash(token)[..16].to_owned()
}
