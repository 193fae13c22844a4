//! Virtual time is deterministic: the same scenario with the same seed gives the same event log, byte
//! for byte, and a different seed gives a different one, on any number of threads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn run(file: &Path, out: &Path, seed: Option<u64>) -> String {
    run_on(file, out, seed, None)
}

fn run_on(file: &Path, out: &Path, seed: Option<u64>, threads: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_halyard-sim"));
    cmd.arg("run").arg(file).arg("--out").arg(out);
    if let Some(n) = threads {
        cmd.env("HALYARD_SIM_THREADS", n);
    }
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

/// Groups of device steps that ran on several threads, from the run's results.json.
fn parallel_groups(out: &Path) -> u64 {
    let text = std::fs::read_to_string(out.join("results.json")).unwrap();
    let results: serde_json::Value = serde_json::from_str(&text).unwrap();
    results["simulated"]["stats"]["parallel_groups"]
        .as_u64()
        .expect("simulated.stats.parallel_groups in results.json")
}

/// Device steps of one instant run on several threads; the log must not depend on how many.
#[test]
fn the_event_log_does_not_depend_on_the_number_of_threads() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/power-cuts-at-5-percent.toml");
    let dir = tempfile::tempdir().unwrap();
    let one = run_on(&file, &dir.path().join("one"), None, Some("1"));
    let three = run_on(&file, &dir.path().join("three"), None, Some("3"));
    assert!(one.contains("power cut"), "{one}");
    assert_eq!(parallel_groups(&dir.path().join("one")), 0, "one thread");
    assert!(
        parallel_groups(&dir.path().join("three")) > 0,
        "no instant had enough device steps for the threaded path: the comparison proves nothing"
    );
    assert!(
        one == three,
        "logs differ:\n--- 1 thread\n{one}\n--- 3 threads\n{three}"
    );
}
