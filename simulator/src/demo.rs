//! `halyard-sim demo`: the README's main job. An embedded server and broker, a fleet of simulated
//! devices across three sites (three time zones) and three hardware classes, a good release rolled out
//! in health-gated waves to the whole fleet, then a bad one (its health checks fail on `kiosk-arm`)
//! that the canary wave catches: the rollout is reverted, every touched device returns to the good
//! release from its other slot, and the release is quarantined for that class. Real agent code, real
//! server, real MQTT and HTTP on loopback.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::device::Behavior;
use crate::harness::{Fleetline, Group, HarnessError, ServerHandle, embedded_settings};

/// Demo parameters.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub devices: usize,
    pub seed: u64,
}

const SITES: [(&str, &str); 3] = [
    ("store-berlin", "Europe/Berlin"),
    ("store-chicago", "America/Chicago"),
    ("factory-osaka", "Asia/Tokyo"),
];
const CLASSES: [&str; 3] = ["pos-x86", "pos-arm", "kiosk-arm"];
const IMAGE_LEN: usize = 64 * 1024;

/// What the demo showed, for its summary and exit code.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    pub good_status: String,
    pub bad_status: String,
    pub versions: BTreeMap<String, u64>,
    pub quarantined: Vec<String>,
    pub touched_by_bad: usize,
    pub seconds: f64,
}

impl DemoOutcome {
    /// The demo's own expectations: the good release everywhere, the bad one stopped and reverted.
    pub fn passed(&self, devices: usize) -> bool {
        self.good_status == "completed"
            && self.bad_status == "reverted"
            && self.versions.get("2.0.0").copied() == Some(devices as u64)
            && self.quarantined == ["kiosk-arm"]
    }
}

fn say(msg: impl AsRef<str>) {
    println!("{}", msg.as_ref());
}

/// Runs the demo, printing progress; returns what happened.
pub fn run(opts: &DemoOptions) -> Result<DemoOutcome, HarnessError> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| HarnessError::Server(e.to_string()))?;
    let server = ServerHandle::start(embedded_settings(&dir.path().join("server")))?;
    say(format!(
        "halyard-server on {} (MQTT {}), data in {}",
        server.url(),
        server.broker,
        dir.path().display()
    ));
    let mut line = Fleetline::new(server.control(), dir.path(), IMAGE_LEN, "1.0.0")?;
    for (site, tz) in SITES {
        let _: Value = line.control.put_json(
            &format!("/api/v1/sites/{site}"),
            &json!({"name": site, "tz": tz, "windows": [], "max_concurrent": 25}),
        )?;
    }
    enroll_fleet(&mut line, opts.devices)?;
    wait_on(&line, "1.0.0", opts.devices, Duration::from_secs(120))?;
    say(format!(
        "{} devices enrolled and reporting 1.0.0 ({:.0} s)\n",
        opts.devices,
        started.elapsed().as_secs_f64()
    ));

    line.upload("2.0.0", 2)?;
    line.upload("2.1.0", 3)?;
    say(
        "releases 2.0.0 (good) and 2.1.0 (fails health on kiosk-arm) uploaded and verified against the trust root\n",
    );
    let good_status = rollout(
        &line,
        "2.0.0",
        "r1-good",
        opts.seed,
        &["completed", "reverted", "paused", "aborted"],
    )?;
    wait_on(&line, "2.0.0", opts.devices, Duration::from_secs(60))?;
    let bad_status = rollout(
        &line,
        "2.1.0",
        "r2-bad",
        opts.seed,
        &["completed", "reverted", "paused", "aborted"],
    )?;
    let versions = wait_settled(&line, opts.devices)?;
    let outcome = DemoOutcome {
        touched_by_bad: touched(&line, "r2-bad")?,
        quarantined: quarantined(&line, "2.1.0")?,
        good_status,
        bad_status,
        versions,
        seconds: started.elapsed().as_secs_f64(),
    };
    summary(&outcome, opts.devices);
    line.shutdown();
    server.stop();
    Ok(outcome)
}

fn enroll_fleet(line: &mut Fleetline, devices: usize) -> Result<(), HarnessError> {
    let groups = SITES.len() * CLASSES.len();
    for (i, (site, _)) in SITES.iter().enumerate() {
        for (j, hw) in CLASSES.iter().enumerate() {
            let n = devices / groups + usize::from(i * CLASSES.len() + j < devices % groups);
            let behaviors = if *hw == "kiosk-arm" {
                vec![("2.1.0".to_owned(), Behavior::Unhealthy)]
            } else {
                vec![]
            };
            line.add(
                &Group {
                    site: (*site).into(),
                    hardware_class: (*hw).into(),
                    count: n,
                    behaviors,
                },
                "1.0.0",
            )?;
        }
    }
    Ok(())
}

fn fleet(line: &Fleetline) -> Result<Value, HarnessError> {
    Ok(line.control.get("/api/v1/fleet")?)
}

fn versions(f: &Value) -> BTreeMap<String, u64> {
    f["by_version"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_on(line: &Fleetline, version: &str, n: usize, timeout: Duration) -> Result<(), HarnessError> {
    line.wait(&format!("{n} devices on {version}"), timeout, |_| {
        let f = fleet(line)?;
        Ok((versions(&f).get(version).copied() == Some(n as u64)).then_some(()))
    })
}

fn wait_settled(line: &Fleetline, n: usize) -> Result<BTreeMap<String, u64>, HarnessError> {
    let r = line.wait("fleet to settle", Duration::from_secs(90), |_| {
        let f = fleet(line)?;
        let busy = ["downloading", "installing", "staged", "rebooting", "trial"]
            .iter()
            .any(|s| f["by_state"][s].as_u64().unwrap_or(0) > 0);
        let v = versions(&f);
        Ok((!busy && v.values().sum::<u64>() == n as u64 && v.len() == 1).then_some(v))
    });
    match r {
        Ok(v) => Ok(v),
        Err(HarnessError::Timeout { .. }) => Ok(versions(&fleet(line)?)),
        Err(e) => Err(e),
    }
}

/// Creates a three-wave rollout and follows it live until it reaches one of `ends`.
fn rollout(
    line: &Fleetline,
    version: &str,
    id: &str,
    seed: u64,
    ends: &[&str],
) -> Result<String, HarnessError> {
    let wave = |p: u8, soak: u64| json!({"size": {"percent": p}, "soak_secs": soak, "failure_budget": {"percent": 2}});
    let policy = json!({"waves": [wave(5, 3), wave(25, 3), wave(70, 2)], "on_breach": "revert", "silent_after_secs": 300, "respect_windows": true});
    let _: Value = line.control.post(
        "/api/v1/rollouts",
        &json!({"id": id, "version": version, "selector": "", "seed": seed, "policy": policy}),
    )?;
    say(format!(
        "rollout {id}: {version} to every device, waves of 5 % (canary), 25 %, 70 %; revert on a breached failure budget"
    ));
    let mut shown = 0;
    let mut last_line = Instant::now();
    let status = line.wait(&format!("rollout {id}"), Duration::from_secs(600), |c| {
        let r: Value = c.get(&format!("/api/v1/rollouts/{id}"))?;
        let decisions = r["decisions"].as_array().cloned().unwrap_or_default();
        for d in decisions.iter().skip(shown) {
            say(format!(
                "  [{}] {}",
                d["kind"].as_str().unwrap_or(""),
                d["message"].as_str().unwrap_or("")
            ));
        }
        shown = decisions.len();
        if last_line.elapsed() > Duration::from_secs(3) {
            last_line = Instant::now();
            let f = fleet(line)?;
            say(format!(
                "  ... devices by version {}, by state {}",
                f["by_version"], f["by_state"]
            ));
        }
        let status = r["rollout"]["status"].as_str().unwrap_or("").to_owned();
        Ok(ends.contains(&status.as_str()).then_some(status))
    })?;
    say(format!("rollout {id}: {status}\n"));
    Ok(status)
}

fn touched(line: &Fleetline, id: &str) -> Result<usize, HarnessError> {
    let r: Value = line.control.get(&format!("/api/v1/rollouts/{id}"))?;
    Ok(r["rollout"]["state"]["devices"]
        .as_object()
        .map_or(0, |m| m.values().filter(|d| !d["assigned_at"].is_null()).count()))
}

fn quarantined(line: &Fleetline, version: &str) -> Result<Vec<String>, HarnessError> {
    let rels: Value = line.control.get("/api/v1/releases")?;
    Ok(rels
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["release"]["version"] == version)
        .flat_map(|r| r["quarantines"].as_array().cloned().unwrap_or_default())
        .filter_map(|q| q["hardware_class"].as_str().map(str::to_owned))
        .collect())
}

fn summary(o: &DemoOutcome, devices: usize) {
    say("summary");
    say(format!("  {:<28} {}", "good release 2.0.0", o.good_status));
    say(format!(
        "  {:<28} {} (touched {} of {} devices before the canary wave stopped it)",
        "bad release 2.1.0", o.bad_status, o.touched_by_bad, devices
    ));
    say(format!(
        "  {:<28} {}",
        "2.1.0 quarantined for",
        o.quarantined.join(", ")
    ));
    let v: Vec<String> = o.versions.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    say(format!("  {:<28} {}", "devices by version now", v.join(", ")));
    say(format!("  {:<28} {:.0} s", "wall time", o.seconds));
    say(if o.passed(devices) {
        "demo passed: the good release reached every device, the bad one was caught in the canary wave and reverted"
    } else {
        "demo FAILED its expectations (see above)"
    });
}
