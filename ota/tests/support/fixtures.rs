//! Deterministic generator of the rejection fixtures in `ota/tests/data/<case>/`.
//!
//! Fixed key seeds and times (from `halyard_ota::fuzzing`), Ed25519's deterministic signatures and the
//! canonical manifest make every byte reproducible; `tests/fixtures.rs` regenerates into a temporary
//! folder and compares. Regenerate the committed copy with
//! `HALYARD_REGENERATE_FIXTURES=1 cargo test -p halyard-ota --test fixtures committed_fixtures_are_current`.

use std::fs;
use std::io::Read;
use std::path::Path;

use halyard_ota::bundle::{self, FORMAT_VERSION, MAGIC};
use halyard_ota::delta::{self, DiffOptions};
use halyard_ota::fuzzing::{RELEASE_SEEDS, UNKNOWN_SEED, fixture_root_file, pseudo_random_image};
use halyard_ota::hash::Sha256Digest;
use halyard_ota::keys::PrivateKey;
use halyard_ota::manifest::{ImageRef, Manifest, Payload, SourceRef};
use serde_json::json;
use time::macros::datetime;

/// Product every fixture device claims to be.
pub const PRODUCT: &str = "demo-box";
/// Security version every fixture device has committed.
pub const COMMITTED_SECURITY_VERSION: u64 = 3;

/// One fixture folder.
pub struct Case {
    pub name: &'static str,
    pub description: &'static str,
    /// `ok` or the `BundleError::code()` expected.
    pub expect: &'static str,
    pub bundle: Vec<u8>,
    pub root: Vec<u8>,
    /// Active image given to the verifier (`source.img`), if any.
    pub source: Option<Vec<u8>>,
}

impl Case {
    /// True when `bundle.hlyb` embeds a delta patch: its bytes follow the delta encoder's tuning, so the
    /// freshness check accepts any committed patch that still verifies and installs.
    pub fn embeds_delta_patch(&self) -> bool {
        self.source.is_some()
    }
}

fn release(i: usize) -> PrivateKey {
    PrivateKey::from_seed(&RELEASE_SEEDS[i])
}

fn old_image() -> Vec<u8> {
    pseudo_random_image(16 * 1024, 1)
}

fn new_image() -> Vec<u8> {
    let mut image = old_image();
    image[4096..4160].fill(0x42);
    image.extend_from_slice(b"release 2.0.0 appended data");
    image
}

fn manifest(payload: Payload) -> Manifest {
    Manifest::new(
        PRODUCT.parse().unwrap(),
        semver::Version::new(2, 0, 0),
        COMMITTED_SECURITY_VERSION,
        datetime!(2026-05-01 00:00 UTC),
        vec![payload],
    )
    .unwrap()
}

fn full_manifest() -> Manifest {
    let image = new_image();
    manifest(Payload::full(
        "rootfs".parse().unwrap(),
        image.len() as u64,
        Sha256Digest::of(&image),
    ))
}

fn build(manifest: &Manifest, signers: &[PrivateKey], payload: &[u8]) -> Vec<u8> {
    let sigs = bundle::sign_manifest(manifest, signers);
    let mut reader: &[u8] = payload;
    let mut sources: Vec<&mut dyn Read> = vec![&mut reader];
    let mut out = Vec::new();
    bundle::write_bundle(&mut out, manifest, &sigs, &mut sources, &mut |_| {}).unwrap();
    out
}

fn valid_full() -> Vec<u8> {
    build(&full_manifest(), &[release(0)], &new_image())
}

fn header_len(manifest: &Manifest, signatures: usize) -> usize {
    8 + 2 + 4 + manifest.to_canonical_bytes().len() + 2 + signatures * (32 + 2 + 64)
}

fn delta_for(source: &[u8]) -> (Manifest, Vec<u8>) {
    let new = new_image();
    let mut patch = Vec::new();
    delta::diff(source, &new, &DiffOptions::default(), &mut patch).unwrap();
    let m = manifest(Payload::delta(
        "rootfs".parse().unwrap(),
        ImageRef {
            size: patch.len() as u64,
            sha256: Sha256Digest::of(&patch),
        },
        ImageRef {
            size: new.len() as u64,
            sha256: Sha256Digest::of(&new),
        },
        SourceRef {
            version: semver::Version::new(1, 0, 0),
            sha256: Sha256Digest::of(source),
        },
    ));
    (m, patch)
}

fn with_manifest(edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
    let mut m = full_manifest();
    edit(&mut m);
    build(&m, &[release(0)], &new_image())
}

/// All cases, in a fixed order.
pub fn cases() -> Vec<Case> {
    let root1 = fixture_root_file(1).to_json();
    let root2 = fixture_root_file(2).to_json();
    let case = |name, description, expect, bundle: Vec<u8>| Case {
        name,
        description,
        expect,
        bundle,
        root: root1.clone(),
        source: None,
    };
    let sig_offset = header_len(&full_manifest(), 1) - 64;
    let mut bad_sig = valid_full();
    bad_sig[sig_offset + 10] ^= 0x01;
    let mut hash_mismatch = valid_full();
    let last = hash_mismatch.len() - 1;
    hash_mismatch[last] ^= 0x80;
    let mut trailing = valid_full();
    trailing.extend_from_slice(b"GARBAGE\n");
    let truncated = valid_full()[..header_len(&full_manifest(), 1) + 1000].to_vec();
    let mut oversized = MAGIC.to_vec();
    oversized.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    oversized.extend_from_slice(&(1u32 << 20).to_be_bytes());
    oversized.extend_from_slice(b"{\"payloads\":[");
    let (delta_manifest, patch) = delta_for(&old_image());
    let other_source = pseudo_random_image(16 * 1024, 2);
    vec![
        case(
            "valid",
            "A correct full bundle signed by a release key: installs.",
            "ok",
            valid_full(),
        ),
        Case {
            source: Some(old_image()),
            ..case(
                "valid-delta",
                "A correct delta bundle whose source is the active image: installs.",
                "ok",
                build(&delta_manifest, &[release(0)], &patch),
            )
        },
        case(
            "bad-signature",
            "One bit of the release signature is flipped.",
            "bad_signature",
            bad_sig,
        ),
        case(
            "unknown-key",
            "Signed only by a key the trust root does not list.",
            "unknown_key",
            build(
                &full_manifest(),
                &[PrivateKey::from_seed(&UNKNOWN_SEED)],
                &new_image(),
            ),
        ),
        Case {
            root: root2.clone(),
            ..case(
                "below-threshold",
                "The root requires 2 of 2 release signatures; the bundle has 1.",
                "threshold_not_met",
                valid_full(),
            )
        },
        case(
            "wrong-product",
            "Correctly signed, but for product other-box.",
            "wrong_product",
            with_manifest(|m| m.product = "other-box".parse().unwrap()),
        ),
        case(
            "expired",
            "Correctly signed, but expired on 2026-05-15 (the verifier's now is 2026-06-01).",
            "expired",
            with_manifest(|m| m.expires = Some(datetime!(2026-05-15 00:00 UTC))),
        ),
        case(
            "lower-security-version",
            "Correctly signed, security_version 2 while the device committed 3.",
            "security_version_too_low",
            with_manifest(|m| m.security_version = COMMITTED_SECURITY_VERSION - 1),
        ),
        Case {
            source: Some(other_source),
            ..case(
                "delta-wrong-source",
                "A correct delta bundle, but the active image (source.img) is not its source.",
                "delta_source_mismatch",
                build(&delta_manifest, &[release(0)], &patch),
            )
        },
        case(
            "truncated",
            "A valid bundle cut 1000 bytes into its payload.",
            "truncated",
            truncated,
        ),
        case(
            "oversized-manifest",
            "The manifest length field says 1 MiB, above the 64 KiB limit.",
            "manifest_too_large",
            oversized,
        ),
        case(
            "payload-hash-mismatch",
            "The last payload byte is altered after signing.",
            "payload_hash_mismatch",
            hash_mismatch,
        ),
        case(
            "trailing-garbage",
            "A valid bundle followed by 8 extra bytes.",
            "trailing_data",
            trailing,
        ),
    ]
}

/// The files of one case: (relative path, bytes).
pub fn case_files(case: &Case) -> Vec<(String, Vec<u8>)> {
    let meta = json!({
        "case": case.name,
        "description": case.description,
        "expect": case.expect,
        "product": PRODUCT,
        "min_security_version": COMMITTED_SECURITY_VERSION,
        "now": "2026-06-01T00:00:00Z",
        "source_image": case.source.as_ref().map(|_| "source.img"),
    });
    let mut meta_bytes = serde_json::to_vec_pretty(&meta).unwrap();
    meta_bytes.push(b'\n');
    let outcome = if case.expect == "ok" {
        "accepted: `bundle verify` exits 0 and writes the target image".to_owned()
    } else {
        format!(
            "rejected with `{}` (the matching `BundleError` variant): `bundle verify` exits 2 and leaves no output file",
            case.expect
        )
    };
    let readme = format!(
        "# {}\n\n{}\n\nExpected: {outcome}.\n\nVerifier inputs: `root.json`, product `{PRODUCT}`, committed security version \
         {COMMITTED_SECURITY_VERSION}, now 2026-06-01T00:00:00Z{}.\nGenerated by `ota/tests/support/fixtures.rs`; do not edit by hand.\n",
        case.name,
        case.description,
        if case.source.is_some() {
            ", active image `source.img`"
        } else {
            ""
        },
    );
    let mut files = vec![
        ("bundle.hlyb".to_owned(), case.bundle.clone()),
        ("case.json".to_owned(), meta_bytes),
        ("README.md".to_owned(), readme.into_bytes()),
        ("root.json".to_owned(), case.root.clone()),
    ];
    if let Some(source) = &case.source {
        files.push(("source.img".to_owned(), source.clone()));
    }
    files
}

/// Writes every case under `dir`.
pub fn write_all(dir: &Path) {
    for case in cases() {
        let case_dir = dir.join(case.name);
        fs::create_dir_all(&case_dir).unwrap();
        for (name, bytes) in case_files(&case) {
            fs::write(case_dir.join(name), bytes).unwrap();
        }
    }
}
