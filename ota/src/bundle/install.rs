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
use crate::delta::{self, SourceRead};
use crate::hash::Sha256Digest;
use crate::manifest::{Name, PayloadKind};
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
    let result =
        match (meta.kind, source) {
            (PayloadKind::Full, _) => copy(&mut payload, &mut sink, &mut |_| {})
                .map(|_| ())
                .map_err(BundleError::from_io),
            (PayloadKind::Delta, None) => Err(BundleError::DeltaNeedsSource {
                payload: meta.name.clone(),
            }),
            (PayloadKind::Delta, Some(src)) => delta::apply(src, &mut payload, &mut sink)
                .map(|_| ())
                .map_err(|source| BundleError::Delta {
                    payload: meta.name.clone(),
                    source,
                }),
        };
    // A bad payload is the root cause of any later failure: report it first.
    payload.finish()?;
    result?;
    let (_, size, digest) = sink.finish()?;
    if size != meta.target.size || digest != meta.target.sha256 {
        return Err(BundleError::TargetMismatch {
            payload: meta.name,
            expected_size: meta.target.size,
            expected: meta.target.sha256,
            actual_size: size,
            actual: digest,
        });
    }
    info!(payload = %meta.name, kind = ?meta.kind, bytes = size, sha256 = %digest, "payload installed");
    Ok(InstallStats {
        payload: meta.name,
        kind: meta.kind,
        payload_bytes: meta.size,
        target_bytes: size,
        target_sha256: digest,
    })
}
