//! Runs a [`Scenario`] against an in-process server in real time: sites, devices, releases, then each
//! rollout until it ends, sampling devices per version all along; then checks the `expect` list.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::expect::{Expect, Observed};
use crate::harness::{Fleetline, Group, HarnessError, ServerHandle, embedded_settings};
use crate::scenario::{FaultKind, FaultSpec, Scenario};

/// One sample of devices per version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub secs: f64,
    pub versions: BTreeMap<String, u64>,
}

/// The outcome of one assertion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub expect: String,
    pub passed: bool,
    pub observed: String,
}

/// Everything a run produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub scenario: String,
    pub seed: u64,
    pub devices: u64,
    pub rollouts: BTreeMap<String, String>,
    pub versions: BTreeMap<String, u64>,
    pub quarantined: BTreeMap<String, Vec<String>>,
    pub bricked: u64,
    /// Power cuts injected by `[[fault]]` entries.
    pub power_cuts: u64,
    pub verdicts: Vec<Verdict>,
    pub timeline: Vec<Sample>,
    /// Wall-clock seconds the run took.
    pub seconds: f64,
    /// Virtual time only: how much simulated time passed and what moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulated: Option<Simulated>,
    /// Real time only: the server's ingest numbers and the phase timings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<crate::metrics::ServerStats>,
}

/// What a virtual-time run simulated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Simulated {
    /// Virtual hours from the start to the end of the run.
    pub hours: f64,
    pub stats: crate::virt::world::Stats,
    /// Lines in the event log (events.log).
    pub log_lines: u64,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.passed)
    }
}

struct Sampler {
    start: Instant,
    cut: std::collections::BTreeSet<String>,
    timeline: Vec<Sample>,
    max: BTreeMap<String, u64>,
}

impl Sampler {
    fn take(&mut self, line: &Fleetline) -> Result<Value, HarnessError> {
        let f: Value = line.control.get("/api/v1/fleet")?;
        let versions: BTreeMap<String, u64> = f["by_version"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        for (v, n) in &versions {
            let m = self.max.entry(v.clone()).or_default();
            *m = (*m).max(*n);
        }
        self.timeline.push(Sample {
            secs: self.start.elapsed().as_secs_f64(),
            versions,
        });
        Ok(f)
    }
}

/// Runs `s`, printing progress lines through `say`.
pub fn run(s: &Scenario, work: &Path, say: &mut dyn FnMut(String)) -> Result<RunReport, HarnessError> {
    let mut settings = embedded_settings(&work.join("server"));
    if let Some(url) = &s.broker {
        settings.broker = halyard_server::settings::BrokerSettings::External { url: url.clone() };
    }
    let server = ServerHandle::start(settings)?;
    let mut line = Fleetline::new(server.control(), work, s.image_kib * 1024, &s.factory)?;
    let mut sampler = Sampler {
        start: Instant::now(),
        cut: Default::default(),
        timeline: Vec::new(),
        max: BTreeMap::new(),
    };
    for site in &s.sites {
        let _: Value = line.control.put_json(&format!("/api/v1/sites/{}", site.name), &json!({"name": site.name, "tz": site.tz, "windows": site.windows, "max_concurrent": site.max_concurrent}))?;
    }
    for g in &s.devices {
        line.add(
            &Group {
                site: g.site.clone(),
                hardware_class: g.hw.clone(),
                count: g.count,
                behaviors: s.behaviors_for(&g.hw),
            },
            &s.factory,
        )?;
    }
    let total = s.device_count() as u64;
    let enrolling = sampler.start;
    let enrolled_by = Duration::from_secs(120 + total / 50);
    line.wait("devices to report", enrolled_by, |_| {
        let f = sampler.take(&line)?;
        Ok((f["by_version"][&s.factory].as_u64() == Some(total)).then_some(()))
    })?;
    say(format!("{total} devices enrolled on {}", s.factory));
    let enroll = enrolling.elapsed();
    let rolling = Instant::now();
    for r in &s.releases {
        line.upload(&r.version, r.security_version)?;
    }
    let mut rollouts = BTreeMap::new();
    for r in &s.rollouts {
        let body = json!({"id": r.id, "version": r.version, "selector": r.selector, "seed": s.seed, "policy": r.policy});
        let _: Value = line.control.post("/api/v1/rollouts", &body)?;
        say(format!("rollout {} of {} started", r.id, r.version));
        let faults: Vec<&FaultSpec> = s
            .faults
            .iter()
            .filter(|f| f.rollout.as_deref() == Some(r.id.as_str()))
            .collect();
        let status = follow(&line, &mut sampler, (&r.id, &faults, s.seed), r.timeout_secs, say)?;
        say(format!("rollout {}: {status}", r.id));
        rollouts.insert(r.id.clone(), status);
        settle(&line, &mut sampler)?;
    }
    let rollout = rolling.elapsed();
    let mut report = finish(s, &line, sampler, rollouts, total)?;
    let page = line.control.get_text("/metrics")?;
    report.server = Some(crate::metrics::ServerStats::parse(&page).with_phases(
        enroll,
        rollout,
        Duration::from_secs_f64(report.seconds),
    ));
    line.shutdown();
    server.stop();
    Ok(report)
}

fn follow(
    line: &Fleetline,
    sampler: &mut Sampler,
    (id, faults, seed): (&str, &[&FaultSpec], u64),
    timeout: u64,
    say: &mut dyn FnMut(String),
) -> Result<String, HarnessError> {
    let mut shown = 0;
    let r = line.wait(&format!("rollout {id}"), Duration::from_secs(timeout), |c| {
        sampler.take(line)?;
        if !faults.is_empty() {
            strike(line, sampler, faults, seed, say)?;
        }
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
        let status = r["rollout"]["status"].as_str().unwrap_or("").to_owned();
        Ok(["completed", "reverted", "aborted", "paused"]
            .contains(&status.as_str())
            .then_some(status))
    });
    match r {
        Err(HarnessError::Timeout { .. }) => {
            let r: Value = line.control.get(&format!("/api/v1/rollouts/{id}"))?;
            Ok(format!(
                "{} (timed out)",
                r["rollout"]["status"].as_str().unwrap_or("unknown")
            ))
        }
        other => other,
    }
}

/// Arms a power cut on each chosen device, a seeded 1..=40 writes and flushes ahead: it strikes
/// wherever the device's update has got to by then (download steps, slot writes, arming, boot, trial).
fn strike(
    line: &Fleetline,
    sampler: &mut Sampler,
    faults: &[&FaultSpec],
    seed: u64,
    say: &mut dyn FnMut(String),
) -> Result<(), HarnessError> {
    for (i, dev) in line.devices.iter().enumerate() {
        let id = dev.id.as_str();
        let hit = faults
            .iter()
            .any(|f| f.kind == FaultKind::PowerCut && crate::faults::chosen(i, seed, f.share));
        if hit && sampler.cut.insert(id.to_owned()) {
            let ops = 1 + (seed.wrapping_add(i as u64).wrapping_mul(2_654_435_761) >> 7) % 40;
            dev.cut_power_after(ops);
            say(format!("  [fault] power cut armed on {id}, {ops} writes ahead"));
        }
    }
    Ok(())
}

/// Waits (bounded) until no device is mid-update.
fn settle(line: &Fleetline, sampler: &mut Sampler) -> Result<(), HarnessError> {
    let r = line.wait("fleet to settle", Duration::from_secs(60), |_| {
        let f = sampler.take(line)?;
        let busy = ["downloading", "installing", "staged", "rebooting", "trial"]
            .iter()
            .any(|s| f["by_state"][s].as_u64().unwrap_or(0) > 0);
        Ok((!busy).then_some(()))
    });
    match r {
        Err(HarnessError::Timeout { .. }) => Ok(()),
        other => other,
    }
}

fn finish(
    s: &Scenario,
    line: &Fleetline,
    mut sampler: Sampler,
    rollouts: BTreeMap<String, String>,
    total: u64,
) -> Result<RunReport, HarnessError> {
    sampler.take(line)?;
    let versions = sampler
        .timeline
        .last()
        .map(|x| x.versions.clone())
        .unwrap_or_default();
    let rels: Value = line.control.get("/api/v1/releases")?;
    let mut quarantined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rels.as_array().into_iter().flatten() {
        let v = r["release"]["version"].as_str().unwrap_or("").to_owned();
        let mut q: Vec<String> = r["quarantines"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| q["hardware_class"].as_str().map(str::to_owned))
            .collect();
        q.sort();
        quarantined.insert(v, q);
    }
    let known: Vec<&str> = s
        .releases
        .iter()
        .map(|r| r.version.as_str())
        .chain([s.factory.as_str()])
        .collect();
    let bricked = line
        .devices
        .iter()
        .filter(|d| d.active_version().is_none_or(|v| !known.contains(&v.as_str())))
        .count() as u64;
    let observed = Observed {
        devices: total,
        versions: versions.clone(),
        max_versions: sampler.max.clone(),
        rollouts: rollouts.clone(),
        quarantined: quarantined.clone(),
        bricked,
        power_cuts: line.devices.iter().map(|d| d.power_cuts()).sum(),
        all_on_since: all_on_since(&sampler.timeline, total),
    };
    let verdicts = verdicts(&s.expect, &observed);
    Ok(RunReport {
        scenario: s.name.clone(),
        seed: s.seed,
        devices: total,
        rollouts,
        versions,
        quarantined,
        bricked,
        power_cuts: line.devices.iter().map(|d| d.power_cuts()).sum(),
        verdicts,
        seconds: sampler.start.elapsed().as_secs_f64(),
        timeline: sampler.timeline,
        simulated: None,
        server: None,
    })
}

/// Each `expect` of a scenario checked against what a run observed (either clock).
pub fn verdicts(expect: &[String], observed: &Observed) -> Vec<Verdict> {
    expect
        .iter()
        .filter_map(|t| Expect::parse(t).ok())
        .map(|e| {
            let (passed, seen) = e.eval(observed);
            Verdict {
                expect: e.text().to_owned(),
                passed,
                observed: seen,
            }
        })
        .collect()
}

/// For each version, the first sample at which every device ran it.
pub fn all_on_since(timeline: &[Sample], devices: u64) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in timeline {
        for (v, n) in &s.versions {
            if *n == devices && devices > 0 {
                out.entry(v.clone()).or_insert(s.secs);
            }
        }
    }
    out
}

/// The final summary as text.
pub fn summary(r: &RunReport) -> String {
    let mut out = format!(
        "scenario {:?} (seed {}), {} devices, {:.0} s\n",
        r.scenario, r.seed, r.devices, r.seconds
    );
    if let Some(v) = &r.simulated {
        out += &format!(
            "  virtual time        {:.1} h in {:.1} s ({} device steps, {} messages, {} refused)\n",
            v.hours, r.seconds, v.stats.device_steps, v.stats.messages, v.stats.refused
        );
    }
    if let Some(m) = &r.server {
        out += &format!(
            "  server              enrolled in {:.0} s, rollouts {:.0} s; {} messages ingested ({:.0}/s), \
             {} refused; ingest p50 <= {} ms, p99 <= {} ms\n",
            m.enroll_seconds,
            m.rollout_seconds,
            m.ingested,
            m.ingest_per_sec,
            m.rejected,
            m.ingest_p50_ms,
            m.ingest_p99_ms
        );
    }
    for (id, st) in &r.rollouts {
        out += &format!("  rollout {id:<16} {st}\n");
    }
    let v: Vec<String> = r.versions.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    out += &format!(
        "  devices by version  {}\n  bricked             {}\n  power cuts          {}\n",
        v.join(", "),
        r.bricked,
        r.power_cuts
    );
    for v in &r.verdicts {
        out += &format!(
            "  {} {:<44} observed {}\n",
            if v.passed { "PASS" } else { "FAIL" },
            v.expect,
            v.observed
        );
    }
    out
}
