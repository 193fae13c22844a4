//! Building bundles: header + payloads in one pass, and re-signing an existing bundle.
//!
//! The writer re-verifies every payload stream against the manifest while copying it, so a file that
//! changed between hashing and writing cannot produce a bundle whose manifest lies.

use std::io::{self, Read, Write};

use tracing::debug;

use crate::bundle::BundleError;
use crate::bundle::format::{BundleHeader, CountingReader};
use crate::keys::{PrivateKey, SignatureEntry};
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::stream::{StreamError, VerifyingReader, stream_error};

/// One payload's bytes, in manifest order.
pub type PayloadSource<'a> = &'a mut dyn Read;

/// Signatures by each of `keys` over the manifest's canonical bytes.
pub fn sign_manifest(manifest: &Manifest, keys: &[PrivateKey]) -> Vec<SignatureEntry> {
    let bytes = manifest.to_canonical_bytes();
    keys.iter().map(|k| SignatureEntry::sign(k, &bytes)).collect()
}

/// Writes a complete bundle to `out` and returns the number of bytes written.
///
/// `payloads` must yield each payload's bytes in manifest order; each is checked against the manifest's
/// size and digest while it is copied. `progress` is called with every chunk length copied.
pub fn write_bundle<W: Write>(
    mut out: W,
    manifest: &Manifest,
    signatures: &[SignatureEntry],
    payloads: &mut [PayloadSource<'_>],
    progress: &mut dyn FnMut(u64),
) -> Result<u64, BundleError> {
    manifest.validate()?;
    if payloads.len() != manifest.payloads.len() {
        return Err(BundleError::Io {
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} payload streams for {} manifest payloads",
                    payloads.len(),
                    manifest.payloads.len()
                ),
            ),
        });
    }
    let header = BundleHeader {
        manifest: manifest.to_canonical_bytes(),
        signatures: signatures.to_vec(),
    }
    .encode()?;
    out.write_all(&header)?;
    let mut written = header.len() as u64;
    for (meta, source) in manifest.payloads.iter().zip(payloads.iter_mut()) {
        let mut verified = VerifyingReader::new(&mut **source, meta.size, meta.sha256);
        let copied = copy(&mut verified, &mut out, progress).map_err(|e| match stream_error(&e) {
            Some(StreamError::DigestMismatch { expected, actual }) => BundleError::PayloadHashMismatch {
                payload: meta.name.clone(),
                expected: *expected,
                actual: *actual,
            },
            Some(StreamError::Truncated { got, .. }) => BundleError::Truncated {
                section: format!("payload input {}", meta.name),
                offset: *got,
            },
            _ => BundleError::from_io(e),
        })?;
        debug!(payload = %meta.name, bytes = copied, "payload written");
        written += copied;
    }
    out.flush()?;
    Ok(written)
}

/// Copies `input` to `out` adding `signatures` (a new signature replaces an older one by the same key).
/// Payload bytes are copied unchanged and not verified here. Returns the new header.
pub fn add_signatures<R: Read, W: Write>(
    input: R,
    mut out: W,
    signatures: &[SignatureEntry],
    limits: &Limits,
) -> Result<BundleHeader, BundleError> {
    let mut input = CountingReader::new(input);
    let mut header = BundleHeader::read(&mut input, limits)?;
    for entry in signatures {
        header.signatures.retain(|s| s.keyid != entry.keyid);
        header.signatures.push(entry.clone());
    }
    let count = header.signatures.len();
    if count > usize::from(limits.max_signatures) {
        return Err(BundleError::TooManySignatures {
            count: u16::try_from(count).unwrap_or(u16::MAX),
            limit: limits.max_signatures,
        });
    }
    out.write_all(&header.encode()?)?;
    copy(&mut input, &mut out, &mut |_| {})?;
    out.flush()?;
    Ok(header)
}

/// `io::copy` with a progress callback.
pub fn copy<R: Read + ?Sized, W: Write + ?Sized>(
    input: &mut R,
    out: &mut W,
    progress: &mut dyn FnMut(u64),
) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
        progress(n as u64);
    }
}
