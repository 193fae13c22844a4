//! The built `halyard-ota` binary: key/root/bundle workflows, offline signing with openssl, the raw
//! delta pair, and exit statuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_halyard-ota"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let out = run(dir, &full);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["keygen", "root.pem"]);
    ok(d, &["keygen", "rel.pem"]);
    let old = halyard_ota::fuzzing::pseudo_random_image(300_000, 7);
    let mut new = old.clone();
    new[10_000..10_500].fill(9);
    std::fs::write(d.join("old.img"), &old).unwrap();
    std::fs::write(d.join("new.img"), &new).unwrap();
    dir
}

const CREATE: &[&str] = &[
    "bundle",
    "create",
    "--product",
    "demo",
    "--version",
    "2.0.0",
    "--security-version",
    "5",
];

#[test]
fn keygen_writes_private_key_0600_and_key_id_agrees() {
    let dir = setup();
    let d = dir.path();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("root.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let a = ok(d, &["key-id", "root.pem"]);
    let b = ok(d, &["key-id", "root.pub"]);
    assert_eq!(a, b);
    // Refuses to overwrite.
    assert_eq!(run(d, &["keygen", "root.pem"]).status.code(), Some(1));
}

#[test]
fn full_bundle_threshold_met_with_openssl_signature() {
    let dir = setup();
    let d = dir.path();
    let ossl = |args: &[&str]| {
        assert!(
            Command::new("openssl")
                .current_dir(d)
                .args(args)
                .status()
                .unwrap()
                .success()
        )
    };
    ossl(&["genpkey", "-algorithm", "ed25519", "-out", "hsm.pem"]);
    ossl(&["pkey", "-in", "hsm.pem", "-pubout", "-out", "hsm.pub"]);
    ok(
        d,
        &[
            "root",
            "init",
            "--root-key",
            "root.pub",
            "--release-key",
            "rel.pub",
            "--release-key",
            "hsm.pub",
        ]
        .iter()
        .chain(&[
            "--release-threshold",
            "2",
            "--expires",
            "2040-01-01T00:00:00Z",
            "--sign",
            "root.pem",
            "-o",
            "root.json",
        ])
        .copied()
        .collect::<Vec<_>>(),
    );
    let mut create = CREATE.to_vec();
    create.extend(["--image", "new.img", "--key", "rel.pem", "-o", "b.hlyb"]);
    ok(d, &create);
    let verify = [
        "bundle",
        "verify",
        "b.hlyb",
        "--root",
        "root.json",
        "-o",
        "out.img",
    ];
    let out = run(d, &verify);
    assert_eq!(
        out.status.code(),
        Some(2),
        "one of two signatures must not verify"
    );
    assert!(!d.join("out.img").exists());

    // Offline: extract the manifest, sign it with openssl, add the raw signature.
    ok(
        d,
        &["bundle", "inspect", "b.hlyb", "--manifest-out", "manifest.json"],
    );
    ossl(&[
        "pkeyutl",
        "-sign",
        "-rawin",
        "-inkey",
        "hsm.pem",
        "-in",
        "manifest.json",
        "-out",
        "manifest.sig",
    ]);
    let signed = ok(
        d,
        &[
            "bundle",
            "sign",
            "b.hlyb",
            "--signature",
            "manifest.sig",
            "--public-key",
            "hsm.pub",
        ],
    );
    assert_eq!(signed["signatures"].as_array().unwrap().len(), 2);
    let report = ok(d, &verify);
    assert_eq!(report["signers"].as_array().unwrap().len(), 2);
    assert_eq!(
        std::fs::read(d.join("out.img")).unwrap(),
        std::fs::read(d.join("new.img")).unwrap()
    );

    // A signature that does not match the given public key is refused before it is added.
    std::fs::write(d.join("junk.sig"), [0u8; 64]).unwrap();
    let out = run(
        d,
        &[
            "bundle",
            "sign",
            "b.hlyb",
            "--signature",
            "junk.sig",
            "--public-key",
            "hsm.pub",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn delta_bundle_installs_only_on_its_source() {
    let dir = setup();
    let d = dir.path();
    ok(
        d,
        &[
            "root",
            "init",
            "--root-key",
            "root.pub",
            "--release-key",
            "rel.pub",
        ]
        .iter()
        .chain(&[
            "--expires",
            "2040-01-01T00:00:00Z",
            "--sign",
            "root.pem",
            "-o",
            "root.json",
        ])
        .copied()
        .collect::<Vec<_>>(),
    );
    let mut create = CREATE.to_vec();
    create.extend([
        "--image",
        "new.img",
        "--from",
        "old.img",
        "--from-version",
        "1.0.0",
        "--key",
        "rel.pem",
        "-o",
        "d.hlyb",
    ]);
    let made = ok(d, &create);
    assert!(
        made["bytes"].as_u64().unwrap() < 20_000,
        "delta bundle is small: {made}"
    );
    let base = [
        "bundle",
        "verify",
        "d.hlyb",
        "--root",
        "root.json",
        "--product",
        "demo",
        "-o",
        "out.img",
    ];
    let mut good = base.to_vec();
    good.extend(["--source-image", "old.img"]);
    ok(d, &good);
    assert_eq!(
        std::fs::read(d.join("out.img")).unwrap(),
        std::fs::read(d.join("new.img")).unwrap()
    );
    std::fs::remove_file(d.join("out.img")).unwrap();
    let mut wrong = base.to_vec();
    wrong.extend(["--source-image", "new.img", "--json"]);
    let out = run(d, &wrong);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["error"], "delta_source_mismatch");
    // Policy failures are exit 2 as well.
    let mut newer = base.to_vec();
    newer.extend(["--source-image", "old.img", "--min-security-version", "6"]);
    assert_eq!(run(d, &newer).status.code(), Some(2));
    assert!(!d.join("out.img").exists());
}

#[test]
fn root_rotation_needs_both_signatures() {
    let dir = setup();
    let d = dir.path();
    ok(d, &["keygen", "root2.pem"]);
    ok(
        d,
        &[
            "root",
            "init",
            "--root-key",
            "root.pub",
            "--release-key",
            "rel.pub",
        ]
        .iter()
        .chain(&[
            "--expires",
            "2040-01-01T00:00:00Z",
            "--sign",
            "root.pem",
            "-o",
            "v1.json",
        ])
        .copied()
        .collect::<Vec<_>>(),
    );
    ok(
        d,
        &[
            "root",
            "rotate",
            "--from",
            "v1.json",
            "--add-root-key",
            "root2.pub",
            "--remove-root-key",
            "root.pub",
        ]
        .iter()
        .chain(&[
            "--expires",
            "2041-01-01T00:00:00Z",
            "--sign",
            "root2.pem",
            "-o",
            "v2.json",
        ])
        .copied()
        .collect::<Vec<_>>(),
    );
    assert_eq!(
        run(d, &["root", "verify", "v1.json", "v2.json"]).status.code(),
        Some(2)
    );
    ok(d, &["root", "sign", "v2.json", "--key", "root.pem"]);
    let report = ok(d, &["root", "verify", "v1.json", "v2.json"]);
    assert_eq!(report["version"], 2);
    // v2 alone is self-consistent too.
    ok(d, &["root", "verify", "v2.json"]);

    // Release-key rotation: v3 replaces the release key; old-key bundles stop verifying through the chain.
    ok(d, &["keygen", "rel2.pem"]);
    ok(
        d,
        &[
            "root",
            "rotate",
            "--from",
            "v2.json",
            "--add-release-key",
            "rel2.pub",
            "--remove-release-key",
            "rel.pub",
        ]
        .iter()
        .chain(&[
            "--expires",
            "2041-01-01T00:00:00Z",
            "--sign",
            "root2.pem",
            "-o",
            "v3.json",
        ])
        .copied()
        .collect::<Vec<_>>(),
    );
    for (key, out) in [("rel.pem", "old.hlyb"), ("rel2.pem", "new.hlyb")] {
        let mut create = CREATE.to_vec();
        create.extend(["--image", "new.img", "--key", key, "-o", out]);
        ok(d, &create);
    }
    let chain = ["--root", "v1.json", "--root", "v2.json", "--root", "v3.json"];
    let verify = |bundle: &str| {
        let mut args = vec!["--json", "bundle", "verify", bundle];
        args.extend(chain);
        run(d, &args)
    };
    assert!(verify("new.hlyb").status.success());
    let old = verify("old.hlyb");
    assert_eq!(old.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&old.stdout).unwrap();
    assert_eq!(report["error"], "unknown_key");
}

#[test]
fn raw_delta_pair_round_trips_and_refuses_wrong_source() {
    let dir = setup();
    let d = dir.path();
    ok(d, &["diff", "old.img", "new.img", "-o", "p.patch"]);
    ok(d, &["apply", "old.img", "p.patch", "-o", "rebuilt.img"]);
    assert_eq!(
        std::fs::read(d.join("rebuilt.img")).unwrap(),
        std::fs::read(d.join("new.img")).unwrap()
    );
    let out = run(d, &["apply", "new.img", "p.patch", "-o", "bad.img"]);
    assert_eq!(out.status.code(), Some(2));
    let names: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("bad.img")),
        "left behind: {names:?}"
    );
}

#[test]
fn usage_errors_exit_1_and_help_documents_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(dir.path(), &["no-such-command"]).status.code(), Some(1));
    assert_eq!(
        run(dir.path(), &["apply", "missing.img", "missing.patch", "-o", "x"])
            .status
            .code(),
        Some(1)
    );
    let help = run(dir.path(), &["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(text.contains("2  verification failed"), "{text}");
}
