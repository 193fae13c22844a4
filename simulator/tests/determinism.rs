//! Virtual time is deterministic: the same scenario with the same seed gives the same event log, byte
//! for byte, and a different seed gives a different one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn run(file: &Path, out: &Path, seed: Option<u64>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_halyard-sim"));
    cmd.arg("run").arg(file).arg("--out").arg(out);
    if let Some(s) = seed {
        cmd.arg("--seed").arg(s.to_string());
    }
    let o = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{text}");
    std::fs::read_to_string(out.join("events.log")).unwrap()
}

#[test]
fn same_seed_same_event_log_byte_for_byte() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/server-crash-mid-rollout.toml");
    let dir = tempfile::tempdir().unwrap();
    let a = run(&file, &dir.path().join("a"), None);
    let b = run(&file, &dir.path().join("b"), None);
    assert!(a.lines().count() > 100, "too little happened:\n{a}");
    assert!(a.contains("ServerCrash"), "{a}");
    assert!(a.contains("-> committed"), "{a}");
    assert!(a == b, "logs differ:\n--- a\n{a}\n--- b\n{b}");
    let c = run(&file, &dir.path().join("c"), Some(14));
    assert_ne!(a, c, "another seed should pick other canaries and timings");
}
