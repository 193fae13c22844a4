//! `halyard-agent install FILE` end to end: the binary reads a layered config with the file boot
//! backend and file-backed slots, verifies a local bundle against the trust root, writes the inactive
//! slot and arms the bootloader; `status` then shows the journaled state. A bundle signed by a key
//! the root does not trust leaves the slot untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use halyard_hardware::boot::SimulatedBoot;
use halyard_hardware::boot::file::FileEnv;
use halyard_protocol::Sha256;
use support::*;

struct Box_ {
    tmp: tempfile::TempDir,
    v1: Vec<u8>,
}

impl Box_ {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        let v1 = image_bytes(200 * 1024, 21);
        let mut a = vec![0u8; SLOT_SIZE];
        a[..v1.len()].copy_from_slice(&v1);
        std::fs::write(p.join("slot-a"), a).unwrap();
        std::fs::write(p.join("slot-b"), vec![0u8; SLOT_SIZE]).unwrap();
        std::fs::write(p.join("root.json"), root_json()).unwrap();
        let mut boot = FileEnv::boot_control(p.join("bootenv"));
        boot.provision().unwrap();
        boot.simulate_boot().unwrap();
        let config = format!(
            "data_dir = {data:?}\nproduct = \"{PRODUCT}\"\ntrust_root = {root:?}\n\
             [boot]\nbackend = \"file\"\nenv = {env:?}\ncurrent = \"env\"\nreboot = \"/bin/true\"\n\
             [slots]\na = {a:?}\nb = {b:?}\n\
             [factory]\nversion = \"1.0.0\"\nsize = {size}\nsha256 = \"{sha}\"\n",
            data = p.join("data").display().to_string(),
            root = p.join("root.json").display().to_string(),
            env = p.join("bootenv").display().to_string(),
            a = p.join("slot-a").display().to_string(),
            b = p.join("slot-b").display().to_string(),
            size = v1.len(),
            sha = Sha256::of(&v1).to_hex(),
        );
        std::fs::write(p.join("agent.toml"), config).unwrap();
        std::fs::create_dir_all(p.join("data")).unwrap();
        Self { tmp, v1 }
    }

    fn agent(&self, args: &[&str]) -> Output {
        let config = self.tmp.path().join("agent.toml");
        Command::new(env!("CARGO_BIN_EXE_halyard-agent"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    }

    fn slot_b_hash(&self, len: usize) -> Sha256 {
        let b = std::fs::read(self.tmp.path().join("slot-b")).unwrap();
        Sha256::of(&b[..len])
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write_bundle(dir: &Path, bytes: &[u8]) -> String {
    let path = dir.join("update.hyd");
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn install_from_a_local_file_stages_the_other_slot() {
    let b = Box_::new();
    let mut v2 = b.v1.clone();
    v2[100..5000].fill(0x33);
    let usb = tempfile::tempdir().unwrap();
    let file = write_bundle(usb.path(), &full_bundle("2.0.0", 1, &v2));
    let out = b.agent(&["install", &file]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(b.slot_b_hash(v2.len()), Sha256::of(&v2));
    let boot = FileEnv::boot_control(b.tmp.path().join("bootenv"))
        .boot_env()
        .unwrap();
    assert!(boot.state(halyard_hardware::Slot::B).bootable, "{boot:?}");
    let out = b.agent(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = text(&out);
    assert!(status.contains("Rebooting"), "{status}");
    assert!(status.contains("slot B: 2.0.0"), "{status}");
}

#[test]
fn install_refuses_a_bundle_the_root_does_not_trust() {
    let b = Box_::new();
    let mut bundle = full_bundle("2.0.0", 1, &b.v1);
    let last = bundle.len() - 1;
    bundle[last] ^= 1; // payload no longer matches its signed digest
    let usb = tempfile::tempdir().unwrap();
    let file = write_bundle(usb.path(), &bundle);
    let out = b.agent(&["install", &file]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not installed"), "{}", text(&out));
    let status = text(&b.agent(&["status"]));
    assert!(status.contains("Failed"), "{status}");
    let boot = FileEnv::boot_control(b.tmp.path().join("bootenv"))
        .boot_env()
        .unwrap();
    assert!(!boot.state(halyard_hardware::Slot::B).bootable, "{boot:?}");
}
