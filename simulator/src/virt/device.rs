//! One device in virtual time: the real agent driver (`halyard-node`: state machine, journal,
//! install path, health loop, codec) over `hardware` fakes (memory slots, a GRUB environment with the
//! real boot-counting rules, fake power and watchdog on a power rail that faults can cut, the agent's
//! records in memory; only the download is a file), with time
//! read from a [`DeviceClock`]. The world loop hands it messages and boots; it hands back sealed
//! messages and how much world time its step took.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use halyard_hardware::block::faulty::{FaultyDevice, PowerRail};
use halyard_hardware::block::{BlockDevice, MemDevice};
use halyard_hardware::boot::grubenv::{GrubEnv, GrubEnvBlock};
use halyard_hardware::boot::{CurrentSlotSource, EnvBootControl, SimulatedBoot};
use halyard_hardware::power::FakePower;
use halyard_hardware::watchdog::FakeWatchdog;
use halyard_node::driver::{Driver, Halt, Hardware, HealthSettings, Outgoing, Settings};
use halyard_node::files::{Files, MemFiles};
use halyard_node::fsm::{Image, Policy};
use halyard_node::health::{Check, Probe, Verdict};
use halyard_node::identity::{Identity, SeqCounter};
use halyard_node::transport::codec::{self, Batch, Inbox, Publication};
use halyard_ota::limits::Limits;
use halyard_ota::root::TrustedRoot;
use halyard_protocol::{DeviceId, Sha256};

use super::clock::DeviceClock;
use super::link::{Link, LinkFetcher};
use crate::device::{Behavior, RailCrash};
use crate::fleet::{PRODUCT, image_version};

/// What every device of a run shares.
#[derive(Debug)]
pub struct Shared {
    pub root: TrustedRoot,
    pub factory_version: String,
    pub factory_image: Vec<u8>,
    pub artifacts: PathBuf,
    /// A file that exists (healthy images check it) and one that does not (unhealthy images).
    pub ready_marker: PathBuf,
    pub missing_marker: PathBuf,
    pub stability_window: Duration,
    pub health_interval: Duration,
    /// The agents' start-up grace for health checks.
    pub startup_grace: Duration,
}

/// A device failed outside the agent's own error handling (set-up).
#[derive(Debug, thiserror::Error)]
#[error("device {name}: {what}: {reason}")]
pub struct VDeviceError {
    pub name: String,
    pub what: &'static str,
    pub reason: String,
}

/// What one step of a device produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Sealed messages for the server, in order.
    pub out: Vec<Publication>,
    /// State transitions (for the event log): (from, to, reason).
    pub transitions: Vec<(String, String, Option<String>)>,
    /// World seconds the step took on the device.
    pub spent: i64,
    /// The device went down (reboot, hang, power cut): boot it again after this many seconds.
    pub down_for: Option<i64>,
    /// Why it went down, for the log.
    pub down_why: Option<&'static str>,
}

/// Boot control over a device's environment block, as the bootloader and the simulator read it.
type SimBoot = EnvBootControl<GrubEnv<Box<dyn BlockDevice>>>;

fn boot_control(env: &MemDevice) -> SimBoot {
    let env: Box<dyn BlockDevice> = Box::new(env.clone());
    EnvBootControl::new(GrubEnv::new(env), CurrentSlotSource::Env)
}

/// One simulated device.
#[derive(Debug)]
pub struct VDevice {
    pub index: usize,
    pub name: String,
    pub site: String,
    pub hw: String,
    pub id: DeviceId,
    key: SigningKey,
    public: [u8; 32],
    seq: SeqCounter,
    inbox: Option<Inbox>,
    slots: [MemDevice; 2],
    env: MemDevice,
    /// The bootloader's view of `env` (kept, so unchanged blocks are not parsed again).
    bootloader: std::sync::Mutex<SimBoot>,
    power: FakePower,
    rail: PowerRail,
    driver: Option<Driver>,
    pub clock: DeviceClock,
    pub link: Arc<Link>,
    shared: Arc<Shared>,
    /// Behaviour per version on this device.
    behaviors: Vec<(String, Behavior)>,
    data_dir: PathBuf,
    /// The agent's records (journal, key, counter): its data partition.
    files: MemFiles,
    pub power_cuts: u64,
}

impl VDevice {
    /// Factory state in `dir`: identity from `key_seed`, factory image in slot A, slot B empty.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        (index, name, site, hw): (usize, String, String, String),
        key_seed: [u8; 32],
        dir: &Path,
        shared: Arc<Shared>,
        behaviors: Vec<(String, Behavior)>,
        clock: DeviceClock,
        link: Arc<Link>,
    ) -> Result<Self, VDeviceError> {
        let who = name.clone();
        let fail = |what, reason: String| VDeviceError {
            name: who.clone(),
            what,
            reason,
        };
        // The download is a file (the installer reads it from a path); the agent's records are kept
        // in memory, with the key put where the agent looks for it.
        std::fs::create_dir_all(dir).map_err(|e| fail("data dir", e.to_string()))?;
        let files = MemFiles::new();
        let pem = halyard_ota::keys::PrivateKey::from_seed(&key_seed).to_pem();
        let no_crash = halyard_node::faults::NoCrash;
        files
            .write_atomic(
                &dir.join(halyard_node::identity::KEY_FILE),
                pem.as_bytes(),
                0o600,
                &no_crash,
            )
            .map_err(|e| fail("identity", e.to_string()))?;
        let identity = Identity::load_or_create_in(&files, dir, &no_crash)
            .map_err(|e| fail("identity", e.to_string()))?;
        let seq = SeqCounter::open_in(Arc::new(files.clone()), dir, Arc::new(no_crash))
            .map_err(|e| fail("seq", e.to_string()))?;
        let env = MemDevice::from_bytes("grubenv", GrubEnvBlock::new(1024).as_bytes().to_vec());
        let size = shared.factory_image.len() + 4096;
        let mut a = vec![0u8; size];
        a[..shared.factory_image.len()].copy_from_slice(&shared.factory_image);
        let dev = Self {
            index,
            site,
            hw,
            id: identity.device_id().clone(),
            key: identity.signing_key(),
            public: identity.public_key(),
            seq,
            inbox: None,
            slots: [MemDevice::from_bytes("slot-a", a), MemDevice::new("slot-b", size)],
            bootloader: std::sync::Mutex::new(boot_control(&env)),
            env,
            power: FakePower::new(),
            rail: PowerRail::always_on(),
            driver: None,
            clock,
            link,
            shared,
            behaviors,
            data_dir: dir.to_path_buf(),
            files,
            power_cuts: 0,
            name,
        };
        dev.boot_control()
            .provision()
            .map_err(|e| fail("boot env", e.to_string()))?;
        Ok(dev)
    }

    /// The raw public key (for enrollment).
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// Enrolled: trust desired states signed by `server_key`.
    pub fn enrolled(&mut self, server_key: VerifyingKey) {
        self.inbox = Some(Inbox::new(self.id.clone(), server_key));
    }

    pub fn is_up(&self) -> bool {
        self.driver.is_some()
    }

    /// An update is in progress (its timers need ticks).
    pub fn is_busy(&self) -> bool {
        self.driver.as_ref().is_some_and(|d| !d.state().is_settled())
    }

    fn boot_control(&self) -> std::sync::MutexGuard<'_, SimBoot> {
        self.bootloader
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn version_in(&self, slot: halyard_hardware::Slot) -> Option<String> {
        let mut head = [0u8; 64];
        self.slots[slot.index()].clone().read_at(0, &mut head).ok()?;
        image_version(&head)
    }

    /// The version of the slot booted last.
    pub fn active_version(&self) -> Option<String> {
        let env = self.boot_control().boot_env().ok()?;
        self.version_in(env.booted.unwrap_or(halyard_hardware::Slot::A))
    }

    fn behavior(&self, version: Option<&str>) -> Behavior {
        self.behaviors
            .iter()
            .find(|(v, _)| Some(v.as_str()) == version)
            .map(|(_, b)| *b)
            .unwrap_or_default()
    }

    /// Arms a power cut `ops` writes, flushes and journal steps from now.
    pub fn cut_power_after(&self, ops: u64) {
        self.rail.cut_after_more_ops(ops);
    }

    fn settings(&self, behavior: Behavior) -> Result<Settings, VDeviceError> {
        let marker = if behavior == Behavior::Unhealthy {
            &self.shared.missing_marker
        } else {
            &self.shared.ready_marker
        };
        let fail = |e: String| VDeviceError {
            name: self.name.clone(),
            what: "settings",
            reason: e,
        };
        let image = &self.shared.factory_image;
        let mut checks = vec![Check::File { path: marker.clone() }];
        if let Behavior::SlowStart(secs) = behavior {
            checks.push(self.slow_start(secs));
        }
        Ok(Settings {
            data_dir: self.data_dir.clone(),
            product: PRODUCT
                .parse()
                .map_err(|e: halyard_ota::manifest::ManifestError| fail(e.to_string()))?,
            hardware_class: self.hw.clone(),
            root: self.shared.root.clone(),
            limits: Limits::DEFAULT,
            policy: Policy::default(),
            health: HealthSettings {
                checks,
                stability_window: self.shared.stability_window,
                interval: self.shared.health_interval,
                startup_grace: self.shared.startup_grace,
            },
            chunk: 256 * 1024,
            fetch_attempts: 3,
            factory: Image {
                version: self.shared.factory_version.clone(),
                size: image.len() as u64,
                sha256: Sha256::of(image),
            },
        })
    }

    /// A service that answers `secs` after the agent starts (as the device's clock counts).
    fn slow_start(&self, secs: u64) -> Check {
        let clock = self.clock.clone();
        let ready_at = halyard_node::clock::Clock::now(&clock) + secs;
        Check::Probe(Probe::new("service", move || {
            let now = halyard_node::clock::Clock::now(&clock);
            match ready_at.checked_sub(now) {
                Some(left) if left > 0 => Verdict::Fail(format!("starting, ready in {left} s")),
                _ => Verdict::Pass,
            }
        }))
    }

    fn hardware(&self) -> Hardware {
        let rail = self.rail.clone();
        let slot =
            |m: &MemDevice| -> Box<dyn BlockDevice> { Box::new(FaultyDevice::new(m.clone(), rail.clone())) };
        let env: Box<dyn BlockDevice> = Box::new(FaultyDevice::new(self.env.clone(), rail.clone()));
        let watchdog = FakeWatchdog::new(self.clock.clone(), self.power.clone(), Duration::from_secs(600));
        Hardware {
            boot: Box::new(EnvBootControl::new(GrubEnv::new(env), CurrentSlotSource::Env)),
            slots: [slot(&self.slots[0]), slot(&self.slots[1])],
            power: Box::new(self.power.clone()),
            watchdog: Box::new(watchdog),
            files: Arc::new(self.files.clone()),
        }
    }
}

/// How long the box is down.
#[derive(Debug, Clone, Copy)]
pub struct Downtime {
    /// A reboot or power-on until the agent runs.
    pub boot_secs: i64,
    /// An image that hangs: until the watchdog resets the box.
    pub hang_secs: i64,
}

impl VDevice {
    /// Power on: the bootloader picks a slot (counting tries), then the agent starts unless the image
    /// hangs. A box whose power was cut comes back here.
    pub fn boot(&mut self, down: Downtime) -> Step {
        self.clock.begin();
        if self.rail.is_cut() {
            self.rail = PowerRail::always_on();
            self.power_cuts += 1;
        }
        let mut step = Step::default();
        let slot = match self.boot_control().simulate_boot() {
            Ok(slot) => slot,
            Err(e) => {
                tracing::warn!(device = %self.name, error = %e, "bootloader failed");
                step.down_for = Some(down.hang_secs);
                step.down_why = Some("bootloader error");
                return step;
            }
        };
        let behavior = self.behavior(self.version_in(slot).as_deref());
        if behavior == Behavior::NoBoot {
            step.down_for = Some(down.hang_secs);
            step.down_why = Some("image hangs; watchdog reset");
            return step;
        }
        let started = self
            .settings(behavior)
            .map_err(|e| e.to_string())
            .and_then(|settings| {
                let fetcher = LinkFetcher::new(
                    self.shared.artifacts.clone(),
                    self.link.clone(),
                    self.clock.clone(),
                );
                Driver::start(
                    settings,
                    self.hardware(),
                    Box::new(fetcher),
                    Arc::new(self.clock.clone()),
                    Arc::new(RailCrash::new(&self.rail)),
                )
                .map_err(|e| e.to_string())
            });
        match started {
            Ok((driver, halt)) => {
                self.driver = Some(driver);
                self.finish(&mut step, Ok(halt), down);
                self.announce_into(&mut step);
            }
            Err(e) => self.went_down(&mut step, &e, down),
        }
        step
    }

    /// A desired state arrived from the broker.
    pub fn deliver(&mut self, topic: &str, payload: &[u8], down: Downtime) -> Step {
        self.clock.begin();
        let mut step = Step::default();
        let (Some(driver), Some(inbox)) = (self.driver.as_mut(), self.inbox.as_mut()) else {
            return step;
        };
        let r = match inbox.accept(topic, payload) {
            Ok(Some(d)) => driver.desired(d.rollout, d.action),
            Ok(None) => driver.settle(),
            Err(rejected) => {
                tracing::warn!(device = %self.name, %rejected, "ignored a message");
                driver.settle()
            }
        };
        self.finish(&mut step, r.map_err(|e| e.to_string()), down);
        step
    }

    /// Timers (a window opening, a trial deadline).
    pub fn tick(&mut self, down: Downtime) -> Step {
        self.clock.begin();
        let mut step = Step::default();
        if let Some(driver) = self.driver.as_mut() {
            let r = driver.settle().map_err(|e| e.to_string());
            self.finish(&mut step, r, down);
        }
        step
    }

    /// The signed presence message: online on connect, or the offline last will the broker publishes
    /// when the connection dies (signed at connect time on a real agent; the same bytes either way).
    pub fn presence(&mut self, online: bool) -> Option<Publication> {
        let now = halyard_node::clock::Clock::now(&self.clock);
        let seq = self.seq.next_seq().ok()?;
        codec::presence(online, now, &self.id, seq, &self.key).ok()
    }

    /// Back online after a partition or a broker restart: the full report again.
    pub fn announce(&mut self) -> Step {
        self.clock.begin();
        let mut step = Step::default();
        self.announce_into(&mut step);
        step
    }

    fn announce_into(&mut self, step: &mut Step) {
        let Some(driver) = self.driver.as_mut() else {
            return;
        };
        match driver.report() {
            Ok(report) => self.seal(step, &Batch::One(Box::new(Outgoing::Report(report)))),
            Err(e) => tracing::warn!(device = %self.name, error = %e, "report"),
        }
    }

    fn finish(&mut self, step: &mut Step, r: Result<Halt, String>, down: Downtime) {
        let outbox = self.driver.as_mut().map(Driver::take_outbox).unwrap_or_default();
        for msg in &outbox {
            if let Outgoing::Event(e) = msg {
                step.transitions
                    .push((state_name(&e.from), state_name(&e.to), e.reason.clone()));
            }
        }
        for batch in codec::batches(outbox) {
            self.seal(step, &batch);
        }
        step.spent = self.clock.spent();
        match r {
            Ok(Halt::Waiting) => {}
            Ok(Halt::Rebooting) => {
                self.driver = None;
                self.power.take_events();
                step.down_for = Some(down.boot_secs);
                step.down_why = Some("reboot");
            }
            Err(e) => self.went_down(step, &e, down),
        }
    }

    fn went_down(&mut self, step: &mut Step, error: &str, down: Downtime) {
        self.driver = None;
        step.down_for = Some(down.boot_secs);
        if self.rail.is_cut() {
            step.down_why = Some("power cut");
        } else {
            tracing::warn!(device = %self.name, %error, "agent stopped; restarting");
            step.down_why = Some("agent error");
        }
    }

    fn seal(&mut self, step: &mut Step, batch: &Batch) {
        let sealed = self
            .seq
            .next_seqs(batch.seqs())
            .map_err(|e| e.to_string())
            .and_then(|seq| batch.seal(&self.id, seq, &self.key).map_err(|e| e.to_string()));
        match sealed {
            Ok(p) => step.out.push(p),
            Err(e) => tracing::warn!(device = %self.name, error = %e, "sealing a message"),
        }
    }
}

fn state_name(s: &halyard_protocol::AgentState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.get("state").and_then(|x| x.as_str()).map(str::to_owned))
        .unwrap_or_default()
}
