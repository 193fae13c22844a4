//! Bodies of the cargo-fuzz targets in `ota/fuzz/`, as plain functions so stable-toolchain tests run
//! them too (`tests/fuzz_smoke.rs`), plus the fixed keys and inputs they and the test fixtures share.
//! Not a public API.

use std::io::{self, Read};
use std::sync::OnceLock;

use time::OffsetDateTime;
use time::macros::datetime;

use crate::bundle::format::{BundleHeader, CountingReader};
use crate::bundle::{self, VerifyPolicy};
use crate::keys::{PrivateKey, SignatureEntry};
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::root::{RootFile, RootSigned, TrustedRoot};

/// Seed of the fixture root key.
pub const ROOT_SEED: [u8; 32] = [0x01; 32];
/// Seeds of the two fixture release keys.
pub const RELEASE_SEEDS: [[u8; 32]; 2] = [[0x10; 32], [0x11; 32]];
/// Seed of a key the fixture root does not know.
pub const UNKNOWN_SEED: [u8; 32] = [0x66; 32];
/// The "now" of every fixture and fuzz run.
pub const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);
/// Expiry of the fixture root.
pub const ROOT_EXPIRES: OffsetDateTime = datetime!(2036-01-01 00:00 UTC);

/// The fixture root file: root key [`ROOT_SEED`], both release keys, `release_threshold` of them.
pub fn fixture_root_file(release_threshold: u32) -> RootFile {
    let root_key = PrivateKey::from_seed(&ROOT_SEED);
    let releases: Vec<_> = RELEASE_SEEDS
        .iter()
        .map(|s| PrivateKey::from_seed(s).public())
        .collect();
    let signed = RootSigned::new(
        ROOT_EXPIRES,
        (&[root_key.public()], 1),
        (&releases, release_threshold),
    )
    .expect("fixture root parameters are valid");
    let mut file = RootFile::unsigned(signed);
    file.sign(&root_key);
    file
}

/// The fixture source image for `patch_apply`: 64 KiB of deterministic, partly repetitive bytes.
pub fn fixed_source() -> &'static [u8] {
    static SOURCE: OnceLock<Vec<u8>> = OnceLock::new();
    SOURCE.get_or_init(|| pseudo_random_image(64 * 1024, 0x5eed))
}

/// Deterministic test image: xorshift noise with runs of repeated text (so deltas find matches).
pub fn pseudo_random_image(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(4) {
            out.extend_from_slice(b"halyard image block ");
        } else {
            out.extend_from_slice(&state.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// The fixture trust root (release threshold 1), parsed once.
fn fixture_root() -> Option<&'static TrustedRoot> {
    static ROOT: OnceLock<Option<TrustedRoot>> = OnceLock::new();
    ROOT.get_or_init(|| TrustedRoot::from_bytes(&fixture_root_file(1).to_json(), NOW, &Limits::DEFAULT).ok())
        .as_ref()
}

/// Fuzz body: every parser that sees untrusted bundle bytes. Must never panic.
pub fn bundle_reader(data: &[u8]) {
    let limits = Limits::DEFAULT;
    let _ = Manifest::from_canonical_bytes(data);
    let _ = RootFile::parse(data, &limits);
    read_bundle(data);
}

/// Open `data` as a bundle against the fixture root and stream every payload to the end.
fn read_bundle(data: &[u8]) {
    let Some(root) = fixture_root() else {
        return;
    };
    let policy = VerifyPolicy {
        product: None,
        min_security_version: 0,
        now: NOW,
        active_source_sha256: None,
    };
    let Ok(mut verified) = bundle::open(data, root, &policy, &Limits::DEFAULT) else {
        return;
    };
    let mut buf = [0u8; 4096];
    while let Ok(Some(mut payload)) = verified.next_payload() {
        while matches!(payload.read(&mut buf), Ok(n) if n > 0) {}
        if payload.finish().is_err() {
            return;
        }
    }
    let _ = verified.finish();
}

/// Fuzz body: a bundle whose manifest is signed by the harness, so the fuzzer gets past the signature
/// check into manifest parsing, policy checks and payload streaming. Input: `u16` big-endian manifest
/// length, the manifest bytes, then the payload area. Must never panic.
pub fn signed_bundle(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (manifest, payloads) = rest.split_at(len);
    let signatures = RELEASE_SEEDS
        .iter()
        .map(|seed| SignatureEntry::sign(&PrivateKey::from_seed(seed), manifest))
        .collect();
    let header = BundleHeader {
        manifest: manifest.to_vec(),
        signatures,
    };
    let Ok(mut bytes) = header.encode() else {
        return;
    };
    bytes.extend_from_slice(payloads);
    read_bundle(&bytes);
}

/// The [`signed_bundle`] input for a bundle file: its manifest and payload area, without signatures.
pub fn signed_bundle_input(bundle: &[u8]) -> Option<Vec<u8>> {
    let mut reader = CountingReader::new(bundle);
    let header = BundleHeader::read(&mut reader, &Limits::DEFAULT).ok()?;
    let rest = &bundle[usize::try_from(reader.offset()).ok()?..];
    let len = u16::try_from(header.manifest.len()).ok()?;
    Some([&len.to_be_bytes()[..], &header.manifest, rest].concat())
}

/// Fuzz body: the manifest parser and what must hold of what it accepts. Must never panic.
pub fn manifest(data: &[u8]) {
    let Ok(manifest) = Manifest::from_canonical_bytes(data) else {
        return;
    };
    let bytes = manifest.to_canonical_bytes();
    assert_eq!(bytes, data, "an accepted manifest is canonical");
    assert_eq!(
        Manifest::from_canonical_bytes(&bytes).ok().as_ref(),
        Some(&manifest)
    );
    let policy = VerifyPolicy {
        product: Some(manifest.product.clone()),
        min_security_version: manifest.security_version,
        now: NOW,
        active_source_sha256: None,
    };
    let _ = bundle::reader::check_policy(&manifest, &policy, &Limits::DEFAULT);
}

/// Fuzz body: trust root parsing, trusting and rotation, plain and re-signed by the fixture root key
/// (so the fuzzer reaches what follows the signature checks). Must never panic.
pub fn trust_root(data: &[u8]) {
    let limits = Limits::DEFAULT;
    let _ = TrustedRoot::from_bytes(data, NOW, &limits);
    let Some(root) = fixture_root() else {
        return;
    };
    let _ = root.rotate(data, NOW, &limits);
    let Ok(mut file) = RootFile::parse(data, &limits) else {
        return;
    };
    let json = file.to_json();
    assert_eq!(
        RootFile::parse(&json, &limits).ok().as_ref(),
        Some(&file),
        "root JSON round trip"
    );
    file.sign(&PrivateKey::from_seed(&ROOT_SEED));
    let json = file.to_json();
    if let Ok(trusted) = TrustedRoot::from_bytes(&json, NOW, &limits) {
        let _ = trusted.rotate(&json, NOW, &limits);
    }
    let _ = root.rotate(&json, NOW, &limits);
}

/// Fuzz body: `delta::apply_with(&fixed_source, data, sink)` with a 1 MiB target cap, so a
/// tiny input cannot ask for gigabytes of copies and stall the fuzzer. Must never panic.
pub fn patch_apply(data: &[u8]) {
    let opts = crate::delta::ApplyOptions {
        max_target_size: 1 << 20,
        ..crate::delta::ApplyOptions::default()
    };
    let _ = crate::delta::apply_with(fixed_source(), data, io::sink(), &opts);
}
