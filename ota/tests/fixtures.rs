//! The committed rejection fixtures are current, each is refused with its specific error by the library,
//! and the CLI exits 2 without leaving an output file behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use halyard_ota::bundle::{self, BundleError, VerifyPolicy};
use halyard_ota::hash::Sha256Digest;
use halyard_ota::limits::Limits;
use halyard_ota::root::TrustedRoot;
use serde_json::Value;
use support::fixtures;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn case_json(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("case.json")).unwrap()).unwrap()
}

#[test]
fn committed_fixtures_are_current() {
    if std::env::var_os("HALYARD_REGENERATE_FIXTURES").is_some() {
        fixtures::write_all(&data_dir());
    }
    for case in fixtures::cases() {
        for (name, bytes) in fixtures::case_files(&case) {
            if name == "bundle.hlyb" && case.embeds_delta_patch() {
                // Checked by behaviour instead (each_case_fails_with_its_specific_variant).
                continue;
            }
            let path = data_dir().join(case.name).join(&name);
            let committed = fs::read(&path).unwrap_or_default();
            assert!(
                committed == bytes,
                "{} is missing or stale: regenerate with HALYARD_REGENERATE_FIXTURES=1 cargo test -p halyard-ota --test fixtures committed_fixtures_are_current",
                path.display()
            );
        }
    }
}

/// Runs the whole device-side verification of one case with the library; returns the error, if any.
fn verify_case(dir: &Path) -> Result<(), BundleError> {
    let meta = case_json(dir);
    let now = halyard_ota::fuzzing::NOW;
    let root =
        TrustedRoot::from_bytes(&fs::read(dir.join("root.json")).unwrap(), now, &Limits::DEFAULT).unwrap();
    let source = meta["source_image"]
        .as_str()
        .map(|s| fs::read(dir.join(s)).unwrap());
    let policy = VerifyPolicy {
        product: Some(meta["product"].as_str().unwrap().parse().unwrap()),
        min_security_version: meta["min_security_version"].as_u64().unwrap(),
        now,
        active_source_sha256: source.as_deref().map(Sha256Digest::of),
    };
    let bytes = fs::read(dir.join("bundle.hlyb")).unwrap();
    let mut verified = bundle::open(&bytes[..], &root, &policy, &Limits::DEFAULT)?;
    while let Some(payload) = verified.next_payload()? {
        let mut image = Vec::new();
        bundle::install_payload(payload, source.as_deref(), &mut image)?;
    }
    verified.finish()
}

#[test]
fn each_case_fails_with_its_specific_variant() {
    let mut seen = 0;
    for case in fixtures::cases() {
        let dir = data_dir().join(case.name);
        let result = verify_case(&dir);
        let matched = match (case.name, &result) {
            ("valid" | "valid-delta", Ok(())) => true,
            ("bad-signature", Err(BundleError::BadSignature { .. })) => true,
            ("unknown-key", Err(BundleError::UnknownKey { .. })) => true,
            (
                "below-threshold",
                Err(BundleError::ThresholdNotMet {
                    valid: 1,
                    threshold: 2,
                }),
            ) => true,
            ("wrong-product", Err(BundleError::WrongProduct { .. })) => true,
            ("expired", Err(BundleError::Expired { .. })) => true,
            (
                "lower-security-version",
                Err(BundleError::SecurityVersionTooLow {
                    found: 2,
                    committed: 3,
                }),
            ) => true,
            ("delta-wrong-source", Err(BundleError::DeltaSourceMismatch { .. })) => true,
            ("truncated", Err(BundleError::Truncated { section, .. })) => section == "payload rootfs",
            ("oversized-manifest", Err(BundleError::ManifestTooLarge { size: 1_048_576, .. })) => true,
            ("payload-hash-mismatch", Err(BundleError::PayloadHashMismatch { .. })) => true,
            ("trailing-garbage", Err(BundleError::TrailingData { .. })) => true,
            _ => false,
        };
        assert!(
            matched,
            "case {}: unexpected result {result:?} (if the delta patch format changed on purpose, regenerate: \
             HALYARD_REGENERATE_FIXTURES=1 cargo test -p halyard-ota --test fixtures committed_fixtures_are_current)",
            case.name
        );
        let code = result.as_ref().err().map_or("ok", BundleError::code);
        assert_eq!(code, case.expect, "case {}", case.name);
        seen += 1;
    }
    assert_eq!(seen, 13);
}

#[test]
fn cli_rejects_each_case_and_leaves_no_output() {
    for case in fixtures::cases() {
        let dir = data_dir().join(case.name);
        let meta = case_json(&dir);
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("image.img");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_halyard-ota"));
        cmd.args(["--json", "bundle", "verify"])
            .arg(dir.join("bundle.hlyb"))
            .arg("--root")
            .arg(dir.join("root.json"))
            .args(["--product", meta["product"].as_str().unwrap()])
            .args([
                "--min-security-version",
                &meta["min_security_version"].to_string(),
            ])
            .args(["--now", meta["now"].as_str().unwrap()])
            .arg("-o")
            .arg(&out);
        if let Some(source) = meta["source_image"].as_str() {
            cmd.arg("--source-image").arg(dir.join(source));
        }
        let output = cmd.output().unwrap();
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        let left: Vec<_> = fs::read_dir(out_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        if case.expect == "ok" {
            assert_eq!(output.status.code(), Some(0), "case {}: {report}", case.name);
            assert_eq!(
                left,
                vec![std::ffi::OsString::from("image.img")],
                "case {}",
                case.name
            );
        } else {
            assert_eq!(output.status.code(), Some(2), "case {}: {report}", case.name);
            assert_eq!(report["error"], case.expect, "case {}", case.name);
            assert!(left.is_empty(), "case {}: left {left:?}", case.name);
        }
    }
}
