//! Signed release bundles of a root image via `halyard_ota`: the full bundle of a release, and a delta
//! bundle from an older root image. `created` is the spec's `source_date_epoch`, so bundles are
//! reproducible too.

use std::path::Path;

use halyard_ota::bundle;
use halyard_ota::delta::{self, DiffOptions};
use halyard_ota::hash::Sha256Digest;
use halyard_ota::keys::{self, PrivateKey};
use halyard_ota::manifest::{ImageRef, Manifest, Name, Payload, SourceRef};

use crate::error::OsError;
use crate::spec::Spec;

/// Payload name of the root image.
pub const PAYLOAD: &str = "rootfs";

fn err(e: impl std::fmt::Display) -> OsError {
    OsError::Bundle(e.to_string())
}

fn manifest(spec: &Spec, payload: Payload) -> Result<Manifest, OsError> {
    let created =
        time::OffsetDateTime::from_unix_timestamp(i64::try_from(spec.source_date_epoch).map_err(err)?)
            .map_err(err)?;
    Manifest::new(
        spec.product.parse().map_err(err)?,
        spec.version.clone(),
        spec.security_version,
        created,
        vec![payload],
    )
    .map_err(err)
}

fn signing_key(spec: &Spec) -> Result<PrivateKey, OsError> {
    keys::read_private_key(&spec.trust.signing_key).map_err(err)
}

fn write(spec: &Spec, payload: Payload, bytes: &[u8], out: &Path) -> Result<u64, OsError> {
    let manifest = manifest(spec, payload)?;
    let signatures = bundle::sign_manifest(&manifest, &[signing_key(spec)?]);
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).map_err(OsError::io(out))?);
    let mut source: &[u8] = bytes;
    let mut sources: [bundle::PayloadSource<'_>; 1] = [&mut source];
    bundle::write_bundle(&mut file, &manifest, &signatures, &mut sources, &mut |_| ()).map_err(err)
}

fn name() -> Result<Name, OsError> {
    PAYLOAD.parse().map_err(err)
}

/// The full bundle of `image` (the release's root image) in `out`; returns its size.
pub fn full(spec: &Spec, image: &[u8], out: &Path) -> Result<u64, OsError> {
    let payload = Payload::full(name()?, image.len() as u64, Sha256Digest::of(image));
    write(spec, payload, image, out)
}

/// The raw delta patch turning `old` into `new` (default diff options).
pub fn patch(old: &[u8], new: &[u8]) -> Result<Vec<u8>, OsError> {
    let mut patch = Vec::new();
    delta::diff(old, new, &DiffOptions::default(), &mut patch).map_err(err)?;
    Ok(patch)
}

/// A delta bundle turning `old` (release `old_version`) into `image`; returns (bundle size, patch size).
pub fn delta(
    spec: &Spec,
    old: &[u8],
    old_version: &semver::Version,
    image: &[u8],
    out: &Path,
) -> Result<(u64, u64), OsError> {
    let patch = patch(old, image)?;
    let payload = Payload::delta(
        name()?,
        ImageRef {
            size: patch.len() as u64,
            sha256: Sha256Digest::of(&patch),
        },
        ImageRef {
            size: image.len() as u64,
            sha256: Sha256Digest::of(image),
        },
        SourceRef {
            version: old_version.clone(),
            sha256: Sha256Digest::of(old),
        },
    );
    let written = write(spec, payload, &patch, out)?;
    Ok((written, patch.len() as u64))
}
