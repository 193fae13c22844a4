//! The shipped bootloader scripts implement exactly `boot_attempt`: both scripts run under bash with
//! small shims for the bootloader commands (GRUB `set`/`load_env`/`save_env`/`regexp`, U-Boot
//! `setenv`/`saveenv`/`load`/`booti`/`reset`), over every reachable environment and a deterministic
//! sample of malformed ones, and must pick the same slot and leave the same variables.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Command;

use halyard_hardware::Slot;
use halyard_hardware::boot::select::{BootEnv, VAR_BOOTED, boot_attempt, var_names};
use halyard_hardware::boot::vars::EnvVars;

const GRUB: &str = include_str!("../boot/grub.cfg");
const UBOOT: &str = include_str!("../boot/uboot-boot.cmd");
const UNSET: &str = "@unset@";

fn all_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = Slot::ALL.iter().flat_map(|s| var_names(*s)).collect();
    names.push(VAR_BOOTED);
    names
}

/// GRUB script → bash: `set X=Y` is an assignment, `insmod` a no-op; the rest are shims.
fn grub_as_bash() -> String {
    let mut out = String::from(
        "load_env() { :; }\nsave_env() { SAVED=1; }\nregexp() { [[ $2 =~ $1 ]]; }\nrun_script() {\n:\n",
    );
    for line in GRUB.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(assign) = trimmed.strip_prefix("set ") {
            writeln!(out, "{indent}{assign}").unwrap();
        } else if trimmed.starts_with("insmod ") {
            writeln!(out, "{indent}:").unwrap();
        } else {
            writeln!(out, "{line}").unwrap();
        }
    }
    out.push_str("}\n");
    out
}

fn uboot_as_bash() -> String {
    let shims = "setenv() { if [ $# -ge 2 ]; then printf -v \"$1\" '%s' \"$2\"; else unset \"$1\"; fi; }\n\
                 saveenv() { SAVED=1; }\nload() { :; }\nbooti() { :; }\nreset() { :; }\n";
    format!("{shims}run_script() {{\n:\n{UBOOT}}}\n")
}

type Case = Vec<Option<String>>;

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let slot_combos: Vec<[Option<String>; 3]> = {
        let mut v = Vec::new();
        for p in ["0", "1", "2"] {
            for t in ["0", "1", "2", "9"] {
                for ok in ["0", "1"] {
                    v.push([Some(p.into()), Some(t.into()), Some(ok.into())]);
                }
            }
        }
        v
    };
    for a in &slot_combos {
        for b in &slot_combos {
            for booted in [None, Some("A"), Some("B")] {
                let mut c: Case = a.iter().chain(b.iter()).cloned().collect();
                c.push(booted.map(String::from));
                cases.push(c);
            }
        }
    }
    // Malformed and missing values, from a fixed-seed LCG.
    let pool = [
        None,
        Some(""),
        Some("0"),
        Some("1"),
        Some("2"),
        Some("5"),
        Some("9"),
        Some("10"),
        Some("x"),
        Some("A"),
    ];
    let mut seed: u64 = 0x5eed_1234;
    for _ in 0..1500 {
        let c = (0..7)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                pool[(seed >> 33) as usize % pool.len()].map(String::from)
            })
            .collect();
        cases.push(c);
    }
    cases
}

/// Run `script` over all cases in one bash process; returns (slot, saved, values) per case.
fn run(script: &str, cases: &[Case]) -> Vec<(String, bool, Case)> {
    let names = all_names();
    let mut text = script.to_owned();
    for case in cases {
        text.push_str("unset ");
        text.push_str(&names.join(" "));
        text.push_str("\nSAVED=0\n");
        for (name, value) in names.iter().zip(case) {
            if let Some(v) = value {
                writeln!(text, "{name}='{v}'").unwrap();
            }
        }
        text.push_str("run_script\nprintf '%s|%s' \"$halyard_slot\" \"$SAVED\"");
        for name in &names {
            write!(text, "; printf '|%s' \"${{{name}-{UNSET}}}\"").unwrap();
        }
        text.push_str("; echo\n");
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let out = Command::new("bash").arg(file.path()).output().expect("bash runs");
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.split('|');
            let slot = fields.next().unwrap().to_owned();
            let saved = fields.next().unwrap() == "1";
            let values = fields.map(|f| (f != UNSET).then(|| f.to_owned())).collect();
            (slot, saved, values)
        })
        .collect()
}

fn to_vars(case: &Case) -> EnvVars {
    all_names()
        .into_iter()
        .zip(case)
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v.clone())))
        .collect()
}

fn check_script(name: &str, script: &str) -> usize {
    let cases = cases();
    let results = run(script, &cases);
    assert_eq!(results.len(), cases.len(), "{name}: one result line per case");
    for (case, (slot, saved, after)) in cases.iter().zip(&results) {
        let before = BootEnv::from_vars(&to_vars(case));
        let (want_slot, want_env) = boot_attempt(&before);
        assert_eq!(slot, want_slot.letter(), "{name}: slot for {case:?}");
        assert_eq!(
            BootEnv::from_vars(&to_vars(after)),
            want_env,
            "{name}: env after {case:?}"
        );
        let changed = want_env.slots != before.slots || before.booted != Some(want_slot);
        assert_eq!(*saved, changed, "{name}: saved for {case:?}");
    }
    cases.len()
}

#[test]
fn grub_script_matches_boot_attempt() {
    let n = check_script("grub.cfg", &grub_as_bash());
    println!("grub.cfg agreed with boot_attempt on {n} environments");
    assert!(n > 3000);
}

#[test]
fn uboot_script_matches_boot_attempt() {
    let n = check_script("uboot-boot.cmd", &uboot_as_bash());
    println!("uboot-boot.cmd agreed with boot_attempt on {n} environments");
    assert!(n > 3000);
}

#[test]
fn grub_script_passes_grub_script_check() {
    let status = Command::new("grub-script-check")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/boot/grub.cfg"))
        .status();
    assert!(
        status
            .expect("grub-script-check (Debian package grub-common) is installed")
            .success()
    );
}
