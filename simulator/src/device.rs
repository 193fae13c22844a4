//! A simulated device: the real agent (`halyard-node` driver and MQTT link) over `hardware` fakes
//! (in-memory slots, a GRUB environment with the real boot-counting rules, fake power and watchdog),
//! enrolled with the real server over HTTP and talking to it over the real broker. Each device runs on
//! its own thread: boot → agent until it reboots → boot again, until stopped.
//!
//! How a release behaves on the device is decided by its [`Behavior`] per version: it boots or hangs
//! (the bootloader then falls back when the tries run out), its health checks pass or fail.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use halyard_hardware::block::faulty::{FaultyDevice, PowerRail};
use halyard_hardware::block::{BlockDevice, MemDevice};
use halyard_hardware::boot::grubenv::{GrubEnv, GrubEnvBlock};
use halyard_hardware::boot::{CurrentSlotSource, EnvBootControl, SimulatedBoot};
use halyard_hardware::power::FakePower;
use halyard_hardware::watchdog::FakeWatchdog;
use halyard_node::app::Link;
use halyard_node::config::{HttpSettings, MqttSettings};
use halyard_node::driver::{Driver, Halt, Hardware, HealthSettings, Settings};
use halyard_node::faults::{CrashPoints, NoCrash, PowerLost};
use halyard_node::fsm::{Image, Policy};
use halyard_node::health::Check;
use halyard_node::identity::{Identity, SeqCounter};
use halyard_node::transport::http::HttpFetcher;
use halyard_ota::limits::Limits;
use halyard_ota::root::TrustedRoot;
use halyard_protocol::{DeviceId, Sha256};

use crate::fleet::{PRODUCT, image_version};

/// How one release behaves on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behavior {
    /// Boots and passes health.
    #[default]
    Good,
    /// Boots, but its health checks fail.
    Unhealthy,
    /// Never comes up (kernel panic, hang): the bootloader falls back when tries run out.
    NoBoot,
    /// Boots; its health checks pass only this many seconds after the agent starts (virtual time).
    SlowStart(u64),
}

/// Everything needed to build a device.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub name: String,
    pub hardware_class: String,
    pub data_dir: PathBuf,
    pub slot_size: usize,
    pub factory_version: String,
    pub factory_image: Vec<u8>,
    pub root: TrustedRoot,
    /// Behaviour of specific versions on this device; others are `Good`.
    pub behaviors: Vec<(String, Behavior)>,
    /// Health: stability window and check interval (short in tests).
    pub stability_window: Duration,
    pub health_interval: Duration,
    /// An address whose TCP port accepts connections (a passing check) and one that refuses (failing).
    pub healthy_addr: SocketAddr,
    pub unhealthy_addr: SocketAddr,
}

/// Enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device {name}: {what}: {reason}")]
    Setup {
        name: String,
        what: &'static str,
        reason: String,
    },
}

/// A simulated device: its media survive "reboots" and the thread that runs it.
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub spec: DeviceSpec,
    pub id: DeviceId,
    slots: [MemDevice; 2],
    env: MemDevice,
    power: FakePower,
    identity: Arc<Identity>,
    /// The machine's power supply: slots, boot environment and the journal's crash points hang on it,
    /// so [`SimDevice::cut_power`] stops every write at once, as a real power cut does.
    rail: Arc<std::sync::Mutex<PowerRail>>,
    cuts: Arc<std::sync::atomic::AtomicU64>,
}

type Boot = EnvBootControl<GrubEnv<Box<dyn BlockDevice>>>;

impl SimDevice {
    /// Factory state: the factory image in slot A (booted, good), slot B empty.
    pub fn new(spec: DeviceSpec) -> Result<Self, DeviceError> {
        let name = spec.name.clone();
        let fail = |what, reason: String| DeviceError::Setup {
            name: name.clone(),
            what,
            reason,
        };
        std::fs::create_dir_all(&spec.data_dir).map_err(|e| fail("data dir", e.to_string()))?;
        let identity = Identity::load_or_create(&spec.data_dir, &NoCrash)
            .map_err(|e| fail("identity", e.to_string()))?;
        let mut a = vec![0u8; spec.slot_size];
        let n = spec.factory_image.len().min(a.len());
        a[..n].copy_from_slice(&spec.factory_image[..n]);
        let dev = Self {
            id: identity.device_id().clone(),
            slots: [
                MemDevice::from_bytes("slot-a", a),
                MemDevice::new("slot-b", spec.slot_size),
            ],
            env: MemDevice::from_bytes("grubenv", GrubEnvBlock::new(1024).as_bytes().to_vec()),
            power: FakePower::new(),
            identity: Arc::new(identity),
            rail: Arc::default(),
            cuts: Arc::default(),
            spec,
        };
        dev.boot_control()
            .provision()
            .map_err(|e| fail("boot env", e.to_string()))?;
        Ok(dev)
    }

    fn boot_control(&self) -> Boot {
        let env: Box<dyn BlockDevice> = Box::new(self.env.clone());
        EnvBootControl::new(GrubEnv::new(env), CurrentSlotSource::Env)
    }

    /// The raw public key, base64, as enrollment wants it.
    pub fn public_key_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.identity.public_key())
    }

    /// The version in the slot the bootloader would boot now (from the image header).
    pub fn version_in(&self, slot: halyard_hardware::Slot) -> Option<String> {
        let mut head = [0u8; 64];
        self.slots[slot.index()].clone().read_at(0, &mut head).ok()?;
        image_version(&head)
    }

    fn behavior(&self, version: Option<&str>) -> Behavior {
        self.spec
            .behaviors
            .iter()
            .find(|(v, _)| Some(v.as_str()) == version)
            .map(|(_, b)| *b)
            .unwrap_or_default()
    }

    fn settings(&self, behavior: Behavior) -> Result<Settings, DeviceError> {
        let addr = if behavior == Behavior::Unhealthy {
            self.spec.unhealthy_addr
        } else {
            self.spec.healthy_addr
        };
        let fail = |e: String| DeviceError::Setup {
            name: self.spec.name.clone(),
            what: "settings",
            reason: e,
        };
        Ok(Settings {
            data_dir: self.spec.data_dir.clone(),
            product: PRODUCT
                .parse()
                .map_err(|e: halyard_ota::manifest::ManifestError| fail(e.to_string()))?,
            hardware_class: self.spec.hardware_class.clone(),
            root: self.spec.root.clone(),
            limits: Limits::DEFAULT,
            policy: Policy::default(),
            health: HealthSettings {
                checks: vec![Check::Tcp {
                    addr,
                    timeout: Duration::from_secs(2),
                }],
                stability_window: self.spec.stability_window,
                interval: self.spec.health_interval,
                startup_grace: Duration::ZERO,
            },
            chunk: 64 * 1024,
            fetch_attempts: 5,
            factory: Image {
                version: self.spec.factory_version.clone(),
                size: self.spec.factory_image.len() as u64,
                sha256: Sha256::of(&self.spec.factory_image),
            },
        })
    }

    fn rail(&self) -> PowerRail {
        self.rail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Cuts the power now: every later write of this boot fails; the device thread then reboots it.
    pub fn cut_power(&self) {
        self.rail().cut_now();
    }

    /// Arms a power cut `ops` writes and flushes (slots, boot environment, journal steps) from now.
    pub fn cut_power_after(&self, ops: u64) {
        self.rail().cut_after_more_ops(ops);
    }

    /// How many times the power failed on this device.
    pub fn power_cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }

    fn power_restored(&self) {
        self.cuts.fetch_add(1, Ordering::SeqCst);
        *self
            .rail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = PowerRail::always_on();
    }

    fn hardware(&self) -> Hardware {
        let rail = self.rail();
        let slot =
            |m: &MemDevice| -> Box<dyn BlockDevice> { Box::new(FaultyDevice::new(m.clone(), rail.clone())) };
        let env: Box<dyn BlockDevice> = Box::new(FaultyDevice::new(self.env.clone(), rail.clone()));
        let watchdog = FakeWatchdog::new(RealTime::default(), self.power.clone(), Duration::from_secs(300));
        Hardware {
            boot: Box::new(EnvBootControl::new(GrubEnv::new(env), CurrentSlotSource::Env)),
            slots: [slot(&self.slots[0]), slot(&self.slots[1])],
            power: Box::new(self.power.clone()),
            watchdog: Box::new(watchdog),
            files: halyard_node::files::DiskFiles::shared(),
        }
    }

    /// One power-on: the bootloader picks a slot; returns the agent's driver unless the image hangs.
    fn power_on(&self) -> Result<Option<Driver>, DeviceError> {
        let fail = |what, e: String| DeviceError::Setup {
            name: self.spec.name.clone(),
            what,
            reason: e,
        };
        let slot = self
            .boot_control()
            .simulate_boot()
            .map_err(|e| fail("boot", e.to_string()))?;
        let behavior = self.behavior(self.version_in(slot).as_deref());
        if behavior == Behavior::NoBoot {
            tracing::debug!(device = %self.spec.name, %slot, "image does not boot; watchdog resets the box");
            return Ok(None);
        }
        let http = HttpSettings {
            ca_file: None,
            max_artifact_bytes: 1 << 32,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
        };
        let fetcher = Box::new(HttpFetcher::new(&http).map_err(|e| fail("http", e.to_string()))?);
        let clock = Arc::new(halyard_node::clock::SystemClock);
        let (driver, _) = Driver::start(
            self.settings(behavior)?,
            self.hardware(),
            fetcher,
            clock,
            Arc::new(RailCrash::new(&self.rail())),
        )
        .map_err(|e| fail("agent start", e.to_string()))?;
        Ok(Some(driver))
    }

    /// Runs the device on its own thread until `stop`: boots, serves the link, reboots, again.
    pub fn spawn(
        self,
        mqtt: MqttSettings,
        server_key: VerifyingKey,
        stop: Arc<AtomicBool>,
        links: tokio::runtime::Handle,
    ) -> JoinHandle<Result<(), DeviceError>> {
        std::thread::Builder::new()
            .name(format!("sim-{}", self.spec.name))
            .stack_size(512 * 1024)
            .spawn(move || self.run(&mqtt, server_key, &stop, &links))
            .unwrap_or_else(|e| {
                std::thread::spawn(move || {
                    Err(DeviceError::Setup {
                        name: "thread".into(),
                        what: "spawn",
                        reason: e.to_string(),
                    })
                })
            })
    }

    fn run(
        &self,
        mqtt: &MqttSettings,
        server_key: VerifyingKey,
        stop: &AtomicBool,
        links: &tokio::runtime::Handle,
    ) -> Result<(), DeviceError> {
        while !stop.load(Ordering::SeqCst) {
            match self.boot_once(mqtt, server_key, stop, links) {
                Err(_) if self.rail().is_cut() => {
                    tracing::info!(device = %self.spec.name, "power cut; the device boots again");
                    self.power_restored();
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// One boot: bootloader, agent, link until the agent reboots the box (or the power fails).
    fn boot_once(
        &self,
        mqtt: &MqttSettings,
        server_key: VerifyingKey,
        stop: &AtomicBool,
        links: &tokio::runtime::Handle,
    ) -> Result<(), DeviceError> {
        let fail = |what, e: String| DeviceError::Setup {
            name: self.spec.name.clone(),
            what,
            reason: e,
        };
        let Some(mut driver) = self.power_on()? else {
            std::thread::sleep(Duration::from_millis(200));
            return Ok(());
        };
        // A boot is a new process on a real device: a new connection, a fresh replay guard, and the
        // broker's retained `desired` delivered again.
        let seq = SeqCounter::open(&self.spec.data_dir, Arc::new(NoCrash))
            .map_err(|e| fail("seq", e.to_string()))?;
        let clock = Arc::new(halyard_node::clock::SystemClock);
        let mut link = Link::connect_on(
            mqtt,
            self.id.clone(),
            self.identity.signing_key(),
            seq,
            server_key,
            clock,
            Some(links.clone()),
        );
        let halt = link
            .serve(&mut driver, mqtt.tick, stop)
            .map_err(|e| fail("agent", e.to_string()));
        link.shutdown();
        if halt? == Halt::Rebooting {
            self.power.take_events();
        }
        Ok(())
    }

    /// The version of the slot booted last (media outlive the device thread, for assertions).
    pub fn active_version(&self) -> Option<String> {
        let env = self.boot_control().boot_env().ok()?;
        self.version_in(env.booted.unwrap_or(halyard_hardware::Slot::A))
    }
}

/// Real elapsed time for the fake watchdog.
#[derive(Debug, Clone, Copy)]
struct RealTime(std::time::Instant);

impl Default for RealTime {
    fn default() -> Self {
        Self(std::time::Instant::now())
    }
}

impl halyard_hardware::watchdog::Clock for RealTime {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The journal's crash points on the machine's power rail: once the power is cut, reaching one fails.
#[derive(Debug)]
pub(crate) struct RailCrash(std::sync::Mutex<FaultyDevice<MemDevice>>);

impl RailCrash {
    pub(crate) fn new(rail: &PowerRail) -> Self {
        Self(std::sync::Mutex::new(FaultyDevice::new(
            MemDevice::new("crash-points", 1),
            rail.clone(),
        )))
    }
}

impl CrashPoints for RailCrash {
    fn reach(&self, point: &'static str) -> Result<(), PowerLost> {
        let mut dev = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        dev.write_at(0, &[1]).map_err(|_| PowerLost { point })
    }
}
