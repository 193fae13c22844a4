//! Server-side deltas through the real driver on simulated hardware: the artifact is the release's
//! signed bundle header followed by an unsigned patch (docs/bundle-format.md, "Server-side deltas").
//! The agent installs it against its active slot when the patch yields the signed target, and falls
//! back to the full bundle when it does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use halyard_hardware::Slot::B;
use halyard_hardware::block::faulty::PowerRail;
use halyard_node::driver::{Halt, Outgoing};
use halyard_node::fsm::State;
use halyard_ota::bundle::format::{BundleHeader, CountingReader};
use halyard_ota::delta::{self, DiffOptions};
use halyard_ota::limits::Limits;
use halyard_protocol::{Artifact, DeltaOffer, Sha256};
use support::*;

fn images() -> (Vec<u8>, Vec<u8>) {
    let v1 = image_bytes(400 * 1024, 7);
    let mut v2 = v1.clone();
    v2[1000..1200].fill(0xAB);
    v2.extend_from_slice(&image_bytes(20 * 1024, 9));
    (v1, v2)
}

/// What the server builds: `bundle`'s header, byte for byte, then `patch`.
fn server_delta(bundle: &[u8], patch: &[u8]) -> Vec<u8> {
    let mut r = CountingReader::new(bundle);
    BundleHeader::read(&mut r, &Limits::DEFAULT).unwrap();
    let mut out = bundle[..r.offset() as usize].to_vec();
    out.extend_from_slice(patch);
    out
}

fn diff(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut patch = Vec::new();
    delta::diff(old, new, &DiffOptions::default(), &mut patch).unwrap();
    patch
}

fn committed_image(state: &State) -> Sha256 {
    match state {
        State::Committed { image, .. } => image.sha256,
        other => panic!("{other:?}"),
    }
}

/// Event reasons the driver queued for the server.
fn reasons(driver: &mut halyard_node::driver::Driver) -> Vec<String> {
    driver
        .take_outbox()
        .into_iter()
        .filter_map(|o| match o {
            Outgoing::Event(e) => e.reason,
            Outgoing::Report(_) => None,
        })
        .collect()
}

#[test]
fn a_server_side_delta_installs_against_the_active_slot() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (v1, v2) = images();
    let full_bytes = full_bundle("2.0.0", 1, &v2);
    let artifact = publish(arts.path(), &server_delta(&full_bytes, &diff(&v1, &v2)));
    // The full bundle is offered but not published: only the server-side delta can succeed.
    let full = Artifact {
        url: "https://server.invalid/v1/artifacts/missing".into(),
        sha256: Sha256::of(&full_bytes),
        size: full_bytes.len() as u64,
    };
    assert!(
        artifact.size * 4 < full.size,
        "{} vs {}",
        artifact.size,
        full.size
    );
    let device = Device::new(tmp.path(), arts.path(), &v1);
    let offer = DeltaOffer {
        source_sha256: Sha256::of(&v1),
        artifact,
    };
    let done = run(
        &device,
        &install("2.0.0", &full, vec![offer]),
        PowerRail::always_on(),
        &always_boots,
    );
    assert_eq!((done.boots, done.cut), (2, false));
    assert_eq!(committed_image(done.driver.state()), Sha256::of(&v2));
    assert_eq!(current_slot(&device), B);
    assert_eq!(device.slot_hash(B, v2.len() as u64), Sha256::of(&v2));
}

/// Offers `patch` behind 2.0.0's signed header, expects the delta to fail with a reason containing
/// `why`, then the full bundle to commit.
fn refused_then_full(v1: &[u8], v2: &[u8], patch: &[u8], why: &str) {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let full_bytes = full_bundle("2.0.0", 1, v2);
    let full = publish(arts.path(), &full_bytes);
    let bad = publish(arts.path(), &server_delta(&full_bytes, patch));
    let device = Device::new(tmp.path(), arts.path(), v1);
    let offer = DeltaOffer {
        source_sha256: Sha256::of(v1),
        artifact: bad,
    };
    let rail = PowerRail::always_on();
    device.bootloader(&rail).unwrap();
    let (mut driver, _) = device.start(&rail).unwrap();
    let halt = driver
        .desired(None, install("2.0.0", &full, vec![offer]))
        .unwrap();
    assert_eq!(halt, Halt::Rebooting);
    let reasons = reasons(&mut driver);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("delta failed") && r.contains(why)),
        "{reasons:?}"
    );
    drop(driver);
    let done = run(&device, &install("2.0.0", &full, vec![]), rail, &always_boots);
    assert_eq!(committed_image(done.driver.state()), Sha256::of(v2));
    assert_eq!(device.slot_hash(B, v2.len() as u64), Sha256::of(v2));
}

#[test]
fn a_patch_for_another_image_is_refused_before_writing_and_the_full_bundle_installs() {
    let (v1, v2) = images();
    let mut other = v2.clone();
    other[300_000] ^= 1;
    refused_then_full(&v1, &v2, &diff(&v1, &other), "rejected (target_mismatch)");
}

#[test]
fn a_patch_that_lies_about_its_target_is_caught_by_the_image_hash() {
    let (v1, v2) = images();
    let mut other = v2.clone();
    other[300_000] ^= 1;
    let mut patch = diff(&v1, &other);
    // Claim the signed target in the patch header; the bytes it produces are still `other`.
    patch[64..96].copy_from_slice(&Sha256::of(&v2).0);
    refused_then_full(&v1, &v2, &patch, "rejected (delta)");
}

#[test]
fn a_full_bundle_offered_as_a_delta_is_not_taken_for_a_patch() {
    let (v1, v2) = images();
    // The bytes after the header are the image, not a patch: the delta fails, the full installs.
    refused_then_full(&v1, &v2, &v2, "rejected (delta)");
}
