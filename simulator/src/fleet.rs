//! The simulated fleet's release material: a trust root and release key (seeded, so runs are
//! reproducible), release images whose first line names their version, and signed full bundles built
//! with `halyard-ota` exactly as a release pipeline would.

use std::io::Read;

use halyard_ota::bundle;
use halyard_ota::hash::Sha256Digest;
use halyard_ota::keys::PrivateKey;
use halyard_ota::limits::Limits;
use halyard_ota::manifest::{Manifest, Payload};
use halyard_ota::root::{RootFile, RootSigned, TrustedRoot};

/// The product every simulated device runs.
pub const PRODUCT: &str = "halyard-sim";

/// Release signing failed.
#[derive(Debug, thiserror::Error)]
#[error("building release material: {0}")]
pub struct FleetError(pub String);

fn err(e: impl std::fmt::Display) -> FleetError {
    FleetError(e.to_string())
}

/// Keys and trust root of a simulated fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    root_key: PrivateKey,
    release_key: PrivateKey,
    root_json: Vec<u8>,
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

impl Fleet {
    /// Keys derived from `seed`; the root expires in ten years.
    pub fn new(seed: u8) -> Result<Self, FleetError> {
        let root_key = PrivateKey::from_seed(&[seed; 32]);
        let release_key = PrivateKey::from_seed(&[seed.wrapping_add(1); 32]);
        let expires = now() + time::Duration::days(3650);
        let signed =
            RootSigned::new(expires, (&[root_key.public()], 1), (&[release_key.public()], 1)).map_err(err)?;
        let mut file = RootFile::unsigned(signed);
        file.sign(&root_key);
        Ok(Self {
            root_json: file.to_json(),
            root_key,
            release_key,
        })
    }

    /// The signed `root.json`.
    pub fn root_json(&self) -> &[u8] {
        &self.root_json
    }

    /// The root as devices trust it.
    pub fn trusted_root(&self) -> Result<TrustedRoot, FleetError> {
        TrustedRoot::from_bytes(&self.root_json, now(), &Limits::DEFAULT).map_err(err)
    }

    /// A signed full bundle of `image` as release `version`, made an hour ago, not expiring.
    pub fn full_bundle(
        &self,
        version: &str,
        security_version: u64,
        image: &[u8],
    ) -> Result<Vec<u8>, FleetError> {
        self.full_bundle_at(
            version,
            security_version,
            image,
            now() - time::Duration::hours(1),
            None,
        )
    }

    /// A signed full bundle made at `created`, expiring at `expires` if given.
    pub fn full_bundle_at(
        &self,
        version: &str,
        security_version: u64,
        image: &[u8],
        created: time::OffsetDateTime,
        expires: Option<time::OffsetDateTime>,
    ) -> Result<Vec<u8>, FleetError> {
        let payload = Payload::full(
            "rootfs".parse().map_err(err)?,
            image.len() as u64,
            Sha256Digest::of(image),
        );
        let mut manifest = Manifest::new(
            PRODUCT.parse().map_err(err)?,
            version.parse().map_err(err)?,
            security_version,
            created,
            vec![payload],
        )
        .map_err(err)?;
        manifest.expires = expires;
        let sigs = bundle::sign_manifest(&manifest, std::slice::from_ref(&self.release_key));
        let mut reader: &[u8] = image;
        let mut sources: Vec<&mut dyn Read> = vec![&mut reader];
        let mut out = Vec::new();
        bundle::write_bundle(&mut out, &manifest, &sigs, &mut sources, &mut |_| {}).map_err(err)?;
        Ok(out)
    }

    /// The root key (for rotation scenarios).
    pub fn root_key(&self) -> &PrivateKey {
        &self.root_key
    }
}

/// The image of release `version`: a header line naming the version, then deterministic bytes with
/// repeats so that deltas between releases stay small.
pub fn image(version: &str, len: usize) -> Vec<u8> {
    let mut out = format!("HALYARD-SIM-IMAGE {version}\n").into_bytes();
    let seed = version
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let body = halyard_ota::fuzzing::pseudo_random_image(len.saturating_sub(out.len()), 1);
    out.extend_from_slice(&body);
    let at = (seed as usize % (len / 2).max(1)).min(len.saturating_sub(64));
    for (i, b) in version.bytes().cycle().take(64).enumerate() {
        if let Some(x) = out.get_mut(at + i) {
            *x = b;
        }
    }
    out.truncate(len);
    out
}

/// The version named by an image's header line, if it is a simulated release image.
pub fn image_version(head: &[u8]) -> Option<String> {
    let line = head.strip_prefix(b"HALYARD-SIM-IMAGE ")?;
    let end = line.iter().position(|b| *b == b'\n')?;
    String::from_utf8(line[..end].to_vec()).ok()
}
