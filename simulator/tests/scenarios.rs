//! Every scenario in `simulator/scenarios/` runs through `halyard-sim run` (the binary, as a user's CI
//! would call it) and must pass its own `expect` list; a scenario whose expectations are false must
//! make the binary exit 1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn run(file: &Path, out: &Path) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_halyard-sim"))
        .arg("run")
        .arg(file)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn shipped_scenarios_pass_and_write_results_and_chart() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    for file in files {
        let out = tempfile::tempdir().unwrap();
        let (code, text) = run(&file, out.path());
        assert_eq!(code, 0, "{} failed:\n{text}", file.display());
        let results: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
        let verdicts = results["verdicts"].as_array().unwrap();
        assert!(
            verdicts.len() >= 4,
            "{}: expectations were not read: {results:#}",
            file.display()
        );
        assert!(verdicts.iter().all(|v| v["passed"] == true), "{results:#}");
        assert!(
            std::fs::read_to_string(out.path().join("chart.svg"))
                .unwrap()
                .contains("<polyline")
        );
    }
}

#[test]
fn a_false_expectation_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.toml");
    std::fs::write(
        &file,
        r#"
name = "wrong on purpose"
expect = ['all_on("9.9.9")', 'bricked == 0']
[[site]]
name = "s"
tz = "UTC"
[[devices]]
site = "s"
hw = "pos-x86"
count = 2
"#,
    )
    .unwrap();
    let (code, text) = run(&file, &dir.path().join("out"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("FAIL all_on(\"9.9.9\")"), "{text}");
    assert!(text.contains("PASS bricked == 0"), "{text}");
}
