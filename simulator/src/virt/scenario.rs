//! A scenario file run in virtual time: the server core and every device on one virtual clock,
//! faults at their times, rollouts one after the other, `expect` checked at the end. Returns the
//! report and the event log.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};

use super::clock::{DeviceClock, VirtualTime};
use super::device::{Downtime, Shared, VDevice};
use super::link::Link;
use super::server::VServer;
use super::world::{Timing, World};
use crate::device::Behavior;
use crate::expect::Observed;
use crate::fleet::{self, Fleet};
use crate::run::{RunReport, Sample, Simulated};
use crate::scenario::{Scenario, Tunables};

/// A virtual-time run failed (not an expectation: those are verdicts).
#[derive(Debug, thiserror::Error)]
#[error("virtual run: {0}")]
pub struct VirtError(pub String);

fn err(e: impl std::fmt::Display) -> VirtError {
    VirtError(e.to_string())
}

/// Samples devices per version (ground truth: the slot each device booted).
#[derive(Debug, Default)]
struct Sampler {
    every: i64,
    next: i64,
    timeline: Vec<Sample>,
    max: BTreeMap<String, u64>,
    live: Option<crate::live::Live>,
    status: String,
}

impl Sampler {
    fn maybe(&mut self, w: &World) {
        if w.now() >= self.next {
            self.take(w);
            self.next = w.now() + self.every;
        }
    }

    fn take(&mut self, w: &World) {
        let mut versions = BTreeMap::new();
        for d in &w.devices {
            let v = d.active_version().unwrap_or_else(|| "unknown".into());
            *versions.entry(v).or_insert(0) += 1;
        }
        for (v, n) in &versions {
            let m = self.max.entry(v.clone()).or_default();
            *m = (*m).max(*n);
        }
        if let Some(live) = &mut self.live {
            live.update(&versions, &format!("{} {}", stamp(w), self.status));
        }
        self.timeline.push(Sample {
            secs: (w.now() - w.start) as f64,
            versions,
        });
    }

    fn say(&self, say: &mut dyn FnMut(String), line: String) {
        match &self.live {
            Some(live) => live.println(&line),
            None => say(line),
        }
    }
}

/// Runs `s` in virtual time with its working files under `work`.
pub fn run(s: &Scenario, work: &Path, say: &mut dyn FnMut(String)) -> Result<(RunReport, String), VirtError> {
    let wall = Instant::now();
    let tun = &s.tunables;
    let (mut world, _devices) = build(s, work)?;
    world.wall.setup = wall.elapsed();
    let mut sampler = Sampler {
        every: tun.sample.secs().max(1),
        live: crate::live::Live::new(world.devices.len() as u64, false),
        ..Sampler::default()
    };
    let start = world.start;
    schedule_faults(&mut world, s, None, start);
    let settle_by = start + 2 * tun.boot.secs() + tun.hang.secs();
    world
        .run_until(settle_by, |w| {
            sampler.maybe(w);
            false
        })
        .map_err(err)?;
    sampler.say(
        say,
        format!("{} devices up on {}", world.devices.len(), s.factory),
    );
    let mut rollouts = BTreeMap::new();
    for r in &s.rollouts {
        let begin = world.now() + r.start_after.secs();
        world
            .run_until(begin, |w| {
                sampler.maybe(w);
                false
            })
            .map_err(err)?;
        let control = world.server().ok_or_else(|| err("server down"))?.control();
        let body = json!({"id": r.id, "version": r.version, "selector": r.selector, "seed": s.seed, "policy": r.policy});
        let _: Value = control.post("/api/v1/rollouts", &body).map_err(err)?;
        sampler.say(
            say,
            format!("{} rollout {} of {} started", stamp(&world), r.id, r.version),
        );
        sampler.status = format!("rollout {} of {}", r.id, r.version);
        world.wake_engine(world.now());
        let now = world.now();
        schedule_faults(&mut world, s, Some(&r.id), now);
        let deadline = world.now() + i64::try_from(r.timeout_secs).unwrap_or(i64::MAX);
        let id = r.id.clone();
        world
            .run_until(deadline, |w| {
                sampler.maybe(w);
                // Paused waits for an operator: the run moves on, as in real time.
                status(w, &id).is_some_and(|st| st != "running" && st != "reverting")
            })
            .map_err(err)?;
        let st = status(&world, &r.id).unwrap_or_else(|| "unknown".into());
        sampler.say(say, format!("{} rollout {}: {st}", stamp(&world), r.id));
        rollouts.insert(r.id.clone(), st);
    }
    let quiet_by = world.now() + 6 * 3600;
    world
        .run_until(quiet_by, |w| {
            sampler.maybe(w);
            !w.busy()
        })
        .map_err(err)?;
    sampler.status = "settled".into();
    sampler.take(&world);
    if let Some(live) = sampler.live.take() {
        live.finish();
    }
    let report = finish(s, &world, sampler, rollouts, wall)?;
    Ok((report, world.log.text().to_owned()))
}

fn stamp(w: &World) -> String {
    format!("[+{:.1} h]", (w.now() - w.start) as f64 / 3600.0)
}

/// A rollout's status, as of the last engine pass (checked after every instant, so it reads no store).
fn status(w: &World, id: &str) -> Option<String> {
    w.rollout_status(id).map(str::to_owned)
}

fn schedule_faults(world: &mut World, s: &Scenario, rollout: Option<&str>, from: i64) {
    for f in s.faults.iter().filter(|f| f.rollout.as_deref() == rollout) {
        world.fault(f.clone(), from + f.at.secs());
    }
}

/// Server, release material, sites and enrolled devices, all at the virtual start.
fn build(s: &Scenario, work: &Path) -> Result<(World, tempfile::TempDir), VirtError> {
    let tun = &s.tunables;
    let time = VirtualTime::at(tun.start);
    let root = device_root(work)?;
    let server_dir = root.path().join("server");
    let server = VServer::start(&server_dir, time.clone()).map_err(err)?;
    let control = server.control();
    let fleet = Fleet::new(s.seed as u8).map_err(err)?;
    let _: Value = control
        .put_bytes("/api/v1/trust-root", fleet.root_json())
        .map_err(err)?;
    let image_len = s.image_kib * 1024;
    let at = |secs: i64| time::OffsetDateTime::from_unix_timestamp(secs).map_err(err);
    let created = at(tun.start - 3600)?;
    let upload = |version: &str, sv: u64, expires: Option<i64>| -> Result<(), VirtError> {
        let expires = expires.map(at).transpose()?;
        let image = fleet::image(version, image_len);
        let bundle = fleet
            .full_bundle_at(version, sv, &image, created, expires)
            .map_err(err)?;
        let _: Value = control.post_bytes("/api/v1/releases", &bundle).map_err(err)?;
        Ok(())
    };
    upload(&s.factory, 1, None)?;
    for r in &s.releases {
        upload(
            &r.version,
            r.security_version,
            r.expires_after.map(|e| tun.start + e.secs()),
        )?;
    }
    for site in &s.sites {
        let body = json!({"name": site.name, "tz": site.tz, "windows": site.windows, "max_concurrent": site.max_concurrent});
        let _: Value = control
            .put_json(&format!("/api/v1/sites/{}", site.name), &body)
            .map_err(err)?;
    }
    let shared = shared(s, &fleet, &server, work)?;
    let timing = Timing {
        down: Downtime {
            boot_secs: tun.boot.secs(),
            hang_secs: tun.hang.secs(),
        },
        latency: tun.latency.secs(),
        engine_tick: tun.engine_tick.secs().max(1),
        poll: tun.health_interval.secs().max(1),
    };
    let mut world = World::new(server, server_dir, time.clone(), timing, s.seed);
    enroll_all(s, &root.path().join("devices"), &shared, &mut world, &control)?;
    Ok((world, root))
}

fn shared(s: &Scenario, fleet: &Fleet, server: &VServer, work: &Path) -> Result<Arc<Shared>, VirtError> {
    let ready = work.join("ready");
    std::fs::write(&ready, b"ok").map_err(err)?;
    Ok(Arc::new(Shared {
        root: fleet.trusted_root().map_err(err)?,
        factory_version: s.factory.clone(),
        factory_image: fleet::image(&s.factory, s.image_kib * 1024),
        artifacts: server.app.artifacts_dir.clone(),
        ready_marker: ready,
        missing_marker: work.join("not-ready"),
        stability_window: std::time::Duration::from_secs(s.tunables.stability_window.0),
        health_interval: std::time::Duration::from_secs(s.tunables.health_interval.0.max(1)),
        startup_grace: std::time::Duration::from_secs(s.tunables.startup_grace.0),
    }))
}

/// Makes and enrolls every device on [`ENROLL_THREADS`] threads over the real API (each device with
/// its own one-time token, [`ENROLL_BATCH`] to a `POST /v1/enroll/batch` as a provisioning station
/// sends them; the tokens come a thousand to a call), then adds them to the world in index order,
/// so the run does not depend on which thread finished first.
fn enroll_all(
    s: &Scenario,
    dirs: &Path,
    shared: &Arc<Shared>,
    world: &mut World,
    control: &crate::control::Control,
) -> Result<(), VirtError> {
    let specs: Vec<_> = s
        .devices
        .iter()
        .flat_map(|g| (0..g.count).map(move |k| (format!("{}-{}-{k}", g.site, g.hw), g)))
        .collect();
    let mut tokens = site_tokens(&specs, control)?;
    let specs: Vec<_> = specs
        .into_iter()
        .map(|(name, g)| {
            let token = tokens.get_mut(&g.site).and_then(Vec::pop).unwrap_or_default();
            (name, g, token)
        })
        .collect();
    let per = specs.len().div_ceil(ENROLL_THREADS).max(1);
    let time = world.time.clone();
    let made = std::thread::scope(|scope| {
        let workers: Vec<_> = specs
            .chunks(per)
            .enumerate()
            .map(|(n, chunk)| {
                let time = time.clone();
                scope.spawn(move || -> Result<Vec<VDevice>, VirtError> {
                    let mut out = Vec::with_capacity(chunk.len());
                    for (k, (name, g, _)) in chunk.iter().enumerate() {
                        out.push(make_one(s, (n * per + k, name, g), (dirs, shared, &time))?);
                    }
                    for (devs, specs) in out.chunks_mut(ENROLL_BATCH).zip(chunk.chunks(ENROLL_BATCH)) {
                        enroll_batch(devs, specs, control)?;
                    }
                    Ok(out)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(err("an enrollment thread panicked")))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    for (i, dev) in made.into_iter().flatten().enumerate() {
        let jitter = (super::mix(s.seed, i as u64) % s.tunables.boot.0.max(1)) as i64;
        world.add(dev, jitter);
    }
    Ok(())
}

/// Devices are made (a key derived, a data directory) and enrolled on this many threads, so the
/// server's store has the next batch while others are being built and answered.
const ENROLL_THREADS: usize = 8;

/// One enrollment token per device, made a thousand at a time per site (as a production line gets
/// them): site -> tokens.
fn site_tokens(
    specs: &[(String, &crate::scenario::DeviceGroup)],
    control: &crate::control::Control,
) -> Result<HashMap<String, Vec<String>>, VirtError> {
    let mut wanted: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, g) in specs {
        *wanted.entry(g.site.as_str()).or_default() += 1;
    }
    let mut out = HashMap::new();
    for (site, n) in wanted {
        out.insert(
            site.to_owned(),
            control.enroll_tokens(Some(site), n).map_err(err)?,
        );
    }
    Ok(out)
}

fn make_one(
    s: &Scenario,
    (i, name, g): (usize, &str, &crate::scenario::DeviceGroup),
    (dirs, shared, time): (&Path, &Arc<Shared>, &VirtualTime),
) -> Result<VDevice, VirtError> {
    VDevice::new(
        (i, name.to_owned(), g.site.clone(), g.hw.clone()),
        key_seed(s.seed, i),
        &dirs.join(name),
        shared.clone(),
        behaviors(s, &g.hw, i),
        DeviceClock::new(time.clone()),
        Link::new(super::mix(s.seed, i as u64 ^ 0x11)),
    )
    .map_err(err)
}

/// Devices per enrollment call (`POST /v1/enroll/batch`, each with its own token).
const ENROLL_BATCH: usize = 500;

/// Enrolls `devs` (with their tokens in `specs`) in one call and gives each the server's key.
fn enroll_batch(
    devs: &mut [VDevice],
    specs: &[(String, &crate::scenario::DeviceGroup, String)],
    control: &crate::control::Control,
) -> Result<(), VirtError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let wanted: Vec<(&str, String, &str)> = devs
        .iter()
        .zip(specs)
        .map(|(d, (_, g, token))| (token.as_str(), b64.encode(d.public_key()), g.hw.as_str()))
        .collect();
    let pems = control.enroll_devices(&wanted).map_err(err)?;
    // Every answer names the same server key: parse it once, not once per device.
    let mut parsed: Option<(String, ed25519_dalek::VerifyingKey)> = None;
    for (dev, pem) in devs.iter_mut().zip(pems) {
        let key = match &parsed {
            Some((seen, key)) if *seen == pem => *key,
            _ => {
                let key = server_key(&pem)?;
                parsed = Some((pem, key));
                key
            }
        };
        dev.enrolled(key);
    }
    Ok(())
}

/// The server's data directory and the devices' (removed with the run): in memory (/dev/shm) when the
/// machine has it, so fsync costs what it costs on a device's own flash, not a shared CI disk; else
/// under `work`. The store is still SQLite with its journal; a crash still loses uncommitted work.
fn device_root(work: &Path) -> Result<tempfile::TempDir, VirtError> {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        work.to_path_buf()
    };
    tempfile::Builder::new()
        .prefix("halyard-sim-")
        .tempdir_in(base)
        .map_err(err)
}

fn key_seed(seed: u64, i: usize) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (n, chunk) in out.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&super::mix(seed ^ 0xd1ce, (i as u64) << 2 | n as u64).to_le_bytes());
    }
    out
}

/// The release behaviours of device `i` of class `hw`, with the releases' crash rates drawn per device.
fn behaviors(s: &Scenario, hw: &str, i: usize) -> Vec<(String, Behavior)> {
    let mut out = s.behaviors_for(hw);
    for (n, r) in s.releases.iter().enumerate() {
        let rate = r.crash_rate.get(hw).copied().unwrap_or(0);
        if rate > 0 && crate::faults::chosen(i, s.seed ^ (n as u64 + 1) << 32, rate) {
            out.retain(|(v, _)| v != &r.version);
            out.push((r.version.clone(), Behavior::Unhealthy));
        }
    }
    out
}

fn server_key(pem: &str) -> Result<ed25519_dalek::VerifyingKey, VirtError> {
    let key = halyard_ota::keys::PublicKey::from_pem(pem).map_err(err)?;
    ed25519_dalek::VerifyingKey::from_bytes(&key.to_raw()).map_err(err)
}

fn finish(
    s: &Scenario,
    world: &World,
    sampler: Sampler,
    rollouts: BTreeMap<String, String>,
    wall: Instant,
) -> Result<RunReport, VirtError> {
    let total = world.devices.len() as u64;
    let versions = sampler
        .timeline
        .last()
        .map(|x| x.versions.clone())
        .unwrap_or_default();
    let server = world.server().ok_or_else(|| err("server down at the end"))?;
    let mut quarantined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for q in server.app.store.quarantines().map_err(err)? {
        quarantined.entry(q.version).or_default().push(q.hardware_class);
    }
    quarantined.values_mut().for_each(|v| v.sort());
    let known: Vec<&str> = s
        .releases
        .iter()
        .map(|r| r.version.as_str())
        .chain([s.factory.as_str()])
        .collect();
    let bricked = world
        .devices
        .iter()
        .filter(|d| d.active_version().is_none_or(|v| !known.contains(&v.as_str())))
        .count() as u64;
    let power_cuts = world.devices.iter().map(|d| d.power_cuts).sum();
    let observed = Observed {
        devices: total,
        versions: versions.clone(),
        max_versions: sampler.max.clone(),
        rollouts: rollouts.clone(),
        quarantined: quarantined.clone(),
        bricked,
        power_cuts,
        all_on_since: crate::run::all_on_since(&sampler.timeline, total),
    };
    let verdicts = crate::run::verdicts(&s.expect, &observed);
    if std::env::var_os("HALYARD_SIM_PROFILE").is_some() {
        let w = world.wall;
        eprintln!(
            "wall {:.1} s: set-up {:.1} s, device steps {:.1} s, ingest {:.1} s, engine {:.1} s",
            wall.elapsed().as_secs_f64(),
            w.setup.as_secs_f64(),
            w.device_steps.as_secs_f64(),
            w.ingest.as_secs_f64(),
            w.engine.as_secs_f64()
        );
    }
    Ok(RunReport {
        scenario: s.name.clone(),
        seed: s.seed,
        devices: total,
        rollouts,
        versions,
        quarantined,
        bricked,
        power_cuts,
        verdicts,
        timeline: sampler.timeline,
        seconds: wall.elapsed().as_secs_f64(),
        simulated: Some(Simulated {
            hours: (world.now() - world.start) as f64 / 3600.0,
            stats: world.stats,
            log_lines: world.log.lines(),
        }),
        server: None,
    })
}

/// Unused tunables are still validated here so a typo'd value fails early.
pub fn check(t: &Tunables) -> Result<(), String> {
    if t.health_interval.0 == 0 || t.engine_tick.0 == 0 {
        return Err("health_interval and engine_tick must be above 0".into());
    }
    Ok(())
}
