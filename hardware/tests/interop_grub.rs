//! GRUB environment interop with the real `grub-editenv` (Debian package grub-common), both ways,
//! and byte equality of the same edits made by the tool and by Halyard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use halyard_hardware::Slot;
use halyard_hardware::boot::grubenv::{GrubEnv, GrubEnvBlock};
use halyard_hardware::boot::vars::EnvVars;
use halyard_hardware::boot::{BootControl, CurrentSlotSource, EnvBootControl, EnvStore, SimulatedBoot};
use proptest::prelude::*;

fn editenv(file: &Path, args: &[&str]) -> String {
    let out = Command::new("grub-editenv")
        .arg(file)
        .args(args)
        .output()
        .expect("grub-editenv is installed");
    assert!(
        out.status.success(),
        "grub-editenv {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn halyard_writes_grub_editenv_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    let store = GrubEnv::create_file(&path).unwrap();
    let mut boot = EnvBootControl::new(store, CurrentSlotSource::Env);
    boot.provision().unwrap();
    boot.set_next(Slot::B, 3).unwrap();
    assert_eq!(boot.simulate_boot().unwrap(), Slot::B);
    let listed = editenv(&path, &["list"]);
    let expected = "HALYARD_A_PRIORITY=1\nHALYARD_A_TRIES=0\nHALYARD_A_OK=1\nHALYARD_B_PRIORITY=2\n\
                    HALYARD_B_TRIES=2\nHALYARD_B_OK=0\nHALYARD_BOOTED=B\n";
    assert_eq!(listed, expected);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024);
}

#[test]
fn grub_editenv_writes_halyard_reads_and_updates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    editenv(&path, &["create"]);
    editenv(
        &path,
        &[
            "set",
            "saved_entry=halyard",
            "HALYARD_B_PRIORITY=2",
            "HALYARD_B_TRIES=1",
            "HALYARD_B_OK=0",
        ],
    );
    editenv(&path, &["set", "note=back\\slash"]);
    let mut boot = EnvBootControl::new(GrubEnv::open_file(&path).unwrap(), CurrentSlotSource::Env);
    let b = boot.slot_state(Slot::B).unwrap();
    assert_eq!((b.priority, b.tries_left, b.successful), (2, 1, false));
    assert_eq!(boot.simulate_boot().unwrap(), Slot::B);
    boot.mark_successful(Slot::B).unwrap();
    let listed = editenv(&path, &["list"]);
    assert!(listed.contains("saved_entry=halyard\n"), "{listed}");
    assert!(listed.contains("note=back\\slash\n"), "{listed}");
    assert!(
        listed.contains("HALYARD_B_OK=1\n") && listed.contains("HALYARD_BOOTED=B\n"),
        "{listed}"
    );
    let mut store = boot.into_store();
    assert_eq!(store.load().unwrap().get("note"), Some("back\\slash"));
}

/// Apply the same edits with the tool and with [`GrubEnvBlock`], starting from the tool's `create`.
fn same_bytes_as_tool(edits: &[(String, Option<String>)]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    editenv(&path, &["create"]);
    let mut ours = GrubEnvBlock::from_bytes(std::fs::read(&path).unwrap()).unwrap();
    for (name, value) in edits {
        match value {
            Some(v) => {
                editenv(&path, &["set", &format!("{name}={v}")]);
                ours.set(name, v).unwrap();
            }
            None => {
                editenv(&path, &["unset", name]);
                ours.unset(name).unwrap();
            }
        }
    }
    let theirs = std::fs::read(&path).unwrap();
    assert_eq!(
        String::from_utf8_lossy(ours.as_bytes()),
        String::from_utf8_lossy(&theirs)
    );
    let listed = editenv(&path, &["list"]);
    let from_ours: String = ours.vars().iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    assert_eq!(listed, from_ours);
}

#[test]
fn fixed_edit_sequence_matches_tool_bytes() {
    let s = |k: &str, v: Option<&str>| (k.to_owned(), v.map(String::from));
    same_bytes_as_tool(&[
        s("b", Some("2")),
        s("a", Some("1")),
        s("b", Some("a much longer value")),
        s("c", Some("multi\nline\\value")),
        s("b", Some("")),
        s("a", None),
        s("zzz", None),
    ]);
}

#[test]
fn store_rebuilds_a_broken_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grubenv");
    editenv(&path, &["create"]);
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|&b| b != b'#').unwrap() + 1;
    bytes[end..end + 8].copy_from_slice(b"HALYARD_"); // a torn append
    std::fs::write(&path, &bytes).unwrap();
    let mut store = GrubEnv::open_file(&path).unwrap();
    let vars: EnvVars = [("k", "v")].into_iter().collect();
    store.store(&vars).unwrap();
    assert_eq!(editenv(&path, &["list"]), "k=v\n");
}

fn edit_strategy() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    let name = "[A-Za-z_][A-Za-z0-9_]{0,11}";
    let value = proptest::option::weighted(0.85, "[ -~]{0,24}");
    proptest::collection::vec((name, value), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_edits_match_tool_bytes(edits in edit_strategy()) {
        same_bytes_as_tool(&edits);
    }
}
