//! Releases: a signed bundle is streamed to disk while hashed (size-capped), verified against the
//! fleet's trust root with `halyard-ota` (signatures, manifest, every payload byte), and only then
//! moved into the content-addressed artifact store. The trust root lives in `root.json` in the data
//! directory; replacing it must be a valid rotation.

use std::fs::File;
use std::io::{BufReader, Read as _};
use std::path::{Path, PathBuf};

use halyard_ota::bundle::{self, VerifyPolicy};
use halyard_ota::limits::Limits;
use halyard_ota::manifest::PayloadKind;
use halyard_ota::root::TrustedRoot;

use crate::model::Release;

/// Why a release or trust root was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(
        "no trust root is installed: PUT /api/v1/trust-root (halyardctl trust-root set root.json) or start with --trust-root"
    )]
    NoTrustRoot,
    #[error("bundle rejected ({code}): {reason}")]
    Rejected { code: &'static str, reason: String },
    #[error(
        "bundle has no full payload: a release must carry its whole image (deltas are made by the server)"
    )]
    NoFullPayload,
    #[error("bundle is larger than the {max}-byte limit")]
    TooLarge { max: u64 },
    #[error("trust root rejected: {0}")]
    Root(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Verifies the bundle file at `path` completely and describes the release it holds.
pub fn verify_bundle(
    path: &Path,
    root: &TrustedRoot,
    sha256: &str,
    size: u64,
    now: i64,
) -> Result<Release, ReleaseError> {
    let reject = |e: bundle::BundleError| ReleaseError::Rejected {
        code: e.code(),
        reason: e.to_string(),
    };
    let file = File::open(path).map_err(io(path))?;
    let policy = VerifyPolicy {
        product: None,
        min_security_version: 0,
        now: time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        active_source_sha256: None,
    };
    let mut verified =
        bundle::open(BufReader::new(file), root, &policy, &Limits::default()).map_err(reject)?;
    let manifest = verified.manifest().clone();
    let mut sink = vec![0u8; 256 * 1024];
    while let Some(mut payload) = verified.next_payload().map_err(reject)? {
        loop {
            match payload.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(reject(bundle::BundleError::from_io(e))),
            }
        }
        payload.finish().map_err(reject)?;
    }
    verified.finish().map_err(reject)?;
    let full = manifest
        .payloads
        .iter()
        .find(|p| p.kind == PayloadKind::Full)
        .ok_or(ReleaseError::NoFullPayload)?;
    Ok(Release {
        version: manifest.version.to_string(),
        product: manifest.product.as_str().to_owned(),
        security_version: manifest.security_version,
        bundle_sha256: sha256.to_owned(),
        bundle_size: size,
        image_sha256: full.target.sha256.to_hex(),
        image_size: full.target.size,
        created_at: now,
    })
}

/// Where the trust root is kept.
pub fn root_path(data_dir: &Path) -> PathBuf {
    data_dir.join("root.json")
}

/// Loads the installed trust root, if any (its expiry is checked at each verification).
pub fn load_root(data_dir: &Path, now: i64) -> Result<Option<TrustedRoot>, ReleaseError> {
    let path = root_path(data_dir);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let now = time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    TrustedRoot::from_bytes(&bytes, now, &Limits::default())
        .map(Some)
        .map_err(|e| ReleaseError::Root(format!("{}: {e}", path.display())))
}

/// Installs `bytes` as the trust root: trusted on its own the first time (admin action), a valid
/// rotation (threshold of old and new root keys, version + 1) afterwards. Written durably.
pub fn install_root(
    data_dir: &Path,
    current: Option<&TrustedRoot>,
    bytes: &[u8],
    now: i64,
) -> Result<TrustedRoot, ReleaseError> {
    let now = time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let limits = Limits::default();
    let root = match current {
        None => TrustedRoot::from_bytes(bytes, now, &limits),
        Some(cur) if cur.signed().version == parse_version(bytes) => {
            TrustedRoot::from_bytes(bytes, now, &limits).and_then(|r| {
                if r == *cur {
                    Ok(r)
                } else {
                    cur.rotate(bytes, now, &limits)
                }
            })
        }
        Some(cur) => cur.rotate(bytes, now, &limits),
    }
    .map_err(|e| ReleaseError::Root(e.to_string()))?;
    let path = root_path(data_dir);
    crate::secrets::write_private(&path, bytes).map_err(|e| ReleaseError::Root(e.to_string()))?;
    Ok(root)
}

fn parse_version(bytes: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.pointer("/signed/version").and_then(|v| v.as_u64()))
        .unwrap_or(0)
}
