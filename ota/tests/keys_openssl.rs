//! Keys and signatures interoperate with the real `openssl` binary in both directions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use halyard_ota::keys::{PrivateKey, PublicKey, read_private_key, read_public_key};

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl").args(args).output().expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn p(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

#[test]
fn openssl_key_is_usable_and_ids_agree() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k.pem");
    let pub_path = dir.path().join("k.pub");
    let der_path = dir.path().join("k.der");
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", p(&key_path)]);
    openssl(&["pkey", "-in", p(&key_path), "-pubout", "-out", p(&pub_path)]);
    openssl(&[
        "pkey",
        "-pubin",
        "-in",
        p(&pub_path),
        "-outform",
        "DER",
        "-out",
        p(&der_path),
    ]);

    let private = read_private_key(&key_path).unwrap();
    let public = read_public_key(&pub_path).unwrap();
    assert_eq!(private.public(), public);
    assert_eq!(read_public_key(&key_path).unwrap(), public);
    let der = std::fs::read(&der_path).unwrap();
    assert_eq!(public.spki_der(), der);
    assert_eq!(
        public.id().to_string(),
        halyard_ota::hash::Sha256Digest::of(&der).to_hex()
    );
}

#[test]
fn halyard_key_is_read_by_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::from_seed(&[42; 32]);
    let key_path = dir.path().join("k.pem");
    halyard_ota::keys::write_private_key(&key_path, &key).unwrap();
    let pub_pem = openssl(&["pkey", "-in", p(&key_path), "-pubout"]);
    let public = PublicKey::from_pem(std::str::from_utf8(&pub_pem).unwrap()).unwrap();
    assert_eq!(public, key.public());
    // And openssl re-emits our private key byte-for-byte (same PKCS#8 v1 form it writes itself).
    let again = openssl(&["pkey", "-in", p(&key_path)]);
    assert_eq!(String::from_utf8(again).unwrap(), key.to_pem());
}

#[test]
fn signatures_cross_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::from_seed(&[9; 32]);
    let key_path = dir.path().join("k.pem");
    let pub_path = dir.path().join("k.pub");
    let msg_path = dir.path().join("manifest.json");
    let sig_path = dir.path().join("manifest.sig");
    halyard_ota::keys::write_private_key(&key_path, &key).unwrap();
    halyard_ota::keys::write_public_key(&pub_path, &key.public()).unwrap();
    let message = br#"{"product":"demo","version":"1.0.0"}"#;
    std::fs::write(&msg_path, message).unwrap();

    // openssl signs, Halyard verifies.
    openssl(&[
        "pkeyutl",
        "-sign",
        "-rawin",
        "-inkey",
        p(&key_path),
        "-in",
        p(&msg_path),
        "-out",
        p(&sig_path),
    ]);
    let openssl_sig = std::fs::read(&sig_path).unwrap();
    key.public().verify(message, &openssl_sig).unwrap();
    // Ed25519 is deterministic: both sides make the same signature.
    assert_eq!(openssl_sig, key.sign(message));

    // Halyard signs, openssl verifies (and rejects a tampered message).
    std::fs::write(&sig_path, key.sign(message)).unwrap();
    let verify = |msg: &Path| {
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", p(&pub_path)])
            .args(["-in", p(msg), "-sigfile", p(&sig_path)])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(verify(&msg_path));
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, br#"{"product":"demo","version":"9.0.0"}"#).unwrap();
    assert!(!verify(&tampered));
}
