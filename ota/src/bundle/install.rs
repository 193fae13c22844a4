//! Turning one verified payload into its target image: copy (full) or stream-apply (delta), hashing what
//! is written and comparing it with the manifest's `target`.
//!
//! The caller owns where the bytes go (a slot writer, a temp file). Only when this returns `Ok` may the
//! caller treat the output as the target image (e.g. rename the temp file or set boot flags).

use std::io::{Read, Write};

use tracing::info;

use crate::bundle::BundleError;
use crate::bundle::reader::PayloadReader;
use crate::bundle::writer::copy;
use crate::delta::{self, DeltaError, PatchHeader, SourceRead};
use crate::hash::Sha256Digest;
use crate::manifest::{Name, Payload, PayloadKind};
use crate::stream::HashingWriter;

/// What an installed payload produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallStats {
    /// The payload.
    pub payload: Name,
    /// Full or delta.
    pub kind: PayloadKind,
    /// Payload bytes read from the bundle.
    pub payload_bytes: u64,
    /// Image bytes written.
    pub target_bytes: u64,
    /// Digest of the image written (equal to the manifest target).
    pub target_sha256: Sha256Digest,
}

/// Writes `payload`'s target image to `out` by applying a delta `patch` obtained OUTSIDE the bundle
/// (e.g. computed by the server for this device's active image). The patch is untrusted: the produced
/// image is accepted only when it matches `payload.target` from the verified manifest. `payload` is
/// usually a full payload of a bundle opened for its header only.
///
/// Errors: [`BundleError::Delta`] when the patch does not apply to `source`,
/// [`BundleError::TargetMismatch`] when it produces anything but the signed target.
pub fn install_from_external_delta<S, R, W>(
    payload: &Payload,
    source: &S,
    patch: R,
    out: W,
) -> Result<InstallStats, BundleError>
where
    S: SourceRead + ?Sized,
    R: Read,
    W: Write,
{
    let mut sink = HashingWriter::new(out, payload.target.size);
    let stats = checked_apply(payload, source, patch, &mut sink)?;
    let (_, size, digest) = sink.finish()?;
    check_target(payload, size, digest)?;
    info!(payload = %payload.name, patch_bytes = stats.patch_bytes, bytes = size, "external delta installed");
    Ok(InstallStats {
        payload: payload.name.clone(),
        kind: PayloadKind::Delta,
        payload_bytes: stats.patch_bytes,
        target_bytes: size,
        target_sha256: digest,
    })
}

/// Reads the patch header and refuses a patch whose declared target is not the manifest's
/// ([`BundleError::TargetMismatch`]) before writing anything, then applies it (the header bytes
/// are fed back to `apply`, which also caps the target at the manifest's size).
fn checked_apply<S, R, W>(
    payload: &Payload,
    source: &S,
    mut patch: R,
    out: W,
) -> Result<delta::ApplyStats, BundleError>
where
    S: SourceRead + ?Sized,
    R: Read,
    W: Write,
{
    let delta_err = |source| BundleError::Delta {
        payload: payload.name.clone(),
        source,
    };
    let mut raw = [0u8; delta::HEADER_LEN];
    patch.read_exact(&mut raw).map_err(|e| {
        delta_err(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => DeltaError::Truncated { what: "header" },
            _ => DeltaError::Io {
                context: "reading the patch",
                source: e,
            },
        })
    })?;
    let header = PatchHeader::from_bytes(&raw).map_err(delta_err)?;
    let declared = Sha256Digest(header.target_sha256);
    if header.target_size != payload.target.size || declared != payload.target.sha256 {
        return Err(BundleError::TargetMismatch {
            payload: payload.name.clone(),
            expected_size: payload.target.size,
            expected: payload.target.sha256,
            actual_size: header.target_size,
            actual: declared,
        });
    }
    let opts = delta::ApplyOptions {
        max_target_size: payload.target.size,
        ..delta::ApplyOptions::default()
    };
    delta::apply_with(source, std::io::Cursor::new(raw).chain(patch), out, &opts).map_err(delta_err)
}

fn check_target(payload: &Payload, size: u64, digest: Sha256Digest) -> Result<(), BundleError> {
    if size != payload.target.size || digest != payload.target.sha256 {
        return Err(BundleError::TargetMismatch {
            payload: payload.name.clone(),
            expected_size: payload.target.size,
            expected: payload.target.sha256,
            actual_size: size,
            actual: digest,
        });
    }
    Ok(())
}

/// Writes `payload`'s target image to `out`. Delta payloads read `source` (the active image).
///
/// Errors: the payload's own verdict ([`BundleError::PayloadHashMismatch`], truncation) comes first,
/// then [`BundleError::DeltaNeedsSource`] / [`BundleError::Delta`], then
/// [`BundleError::TargetMismatch`].
pub fn install_payload<R, S, W>(
    mut payload: PayloadReader<'_, R>,
    source: Option<&S>,
    out: W,
) -> Result<InstallStats, BundleError>
where
    R: Read,
    S: SourceRead + ?Sized,
    W: Write,
{
    let meta = payload.payload().clone();
    let mut sink = HashingWriter::new(out, meta.target.size);
    let result = match (meta.kind, source) {
        (PayloadKind::Full, _) => copy(&mut payload, &mut sink, &mut |_| {})
            .map(|_| ())
            .map_err(BundleError::from_io),
        (PayloadKind::Delta, None) => Err(BundleError::DeltaNeedsSource {
            payload: meta.name.clone(),
        }),
        (PayloadKind::Delta, Some(src)) => checked_apply(&meta, src, &mut payload, &mut sink).map(|_| ()),
    };
    // A bad payload is the root cause of any later failure: report it first.
    payload.finish()?;
    result?;
    let (_, size, digest) = sink.finish()?;
    check_target(&meta, size, digest)?;
    info!(payload = %meta.name, kind = ?meta.kind, bytes = size, sha256 = %digest, "payload installed");
    Ok(InstallStats {
        payload: meta.name,
        kind: meta.kind,
        payload_bytes: meta.size,
        target_bytes: size,
        target_sha256: digest,
    })
}
