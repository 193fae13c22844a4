//! A simulated device for the agent's end-to-end and crash tests: two slots and a GRUB environment on
//! in-memory media behind `FaultyDevice`s sharing one `PowerRail`, a `FakePower`, a `FakeWatchdog`, the
//! journal's crash points on the same rail, signed bundles (full and delta) served by a `DirFetcher`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod api_server;
pub mod http_server;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use halyard_hardware::block::faulty::{FaultyDevice, PowerRail};
use halyard_hardware::block::slot_writer::hash_prefix;
use halyard_hardware::block::{BlockDevice, MemDevice};
use halyard_hardware::boot::grubenv::{GrubEnv, GrubEnvBlock};
use halyard_hardware::boot::ubootenv::UBootEnv;
use halyard_hardware::boot::{BootControl, CurrentSlotSource, EnvBootControl, EnvStore, SimulatedBoot};
use halyard_hardware::power::FakePower;
use halyard_hardware::watchdog::FakeWatchdog;
use halyard_node::clock::ManualClock;
use halyard_node::driver::{Driver, Halt, Hardware, HealthSettings, Settings};
use halyard_node::faults::{CrashPoints, PowerLost};
use halyard_node::fetch::DirFetcher;
use halyard_node::fsm::{Image, Policy};
use halyard_node::health::Check;
use halyard_ota::bundle;
use halyard_ota::delta::{self, DiffOptions};
use halyard_ota::hash::Sha256Digest;
use halyard_ota::keys::PrivateKey;
use halyard_ota::limits::Limits;
use halyard_ota::manifest::{ImageRef, Manifest, Payload, SourceRef};
use halyard_ota::root::{RootFile, RootSigned, TrustedRoot};
use halyard_protocol::{Artifact, DeltaOffer, DesiredAction, Sha256};
use time::macros::datetime;

pub const SLOT_SIZE: usize = 768 * 1024;
pub const PRODUCT: &str = "demo-box";

pub fn now() -> u64 {
    datetime!(2026-06-01 00:00 UTC).unix_timestamp() as u64
}

/// Deterministic image bytes with repeats (so deltas find matches).
pub fn image_bytes(len: usize, seed: u64) -> Vec<u8> {
    halyard_ota::fuzzing::pseudo_random_image(len, seed)
}

pub fn image_of(version: &str, bytes: &[u8]) -> Image {
    Image {
        version: version.into(),
        size: bytes.len() as u64,
        sha256: Sha256::of(bytes),
    }
}

fn key(n: u8) -> PrivateKey {
    PrivateKey::from_seed(&[n; 32])
}

pub fn trusted_root() -> TrustedRoot {
    TrustedRoot::from_bytes(&root_json(), datetime!(2026-06-01 00:00 UTC), &Limits::DEFAULT).unwrap()
}

/// The signed `root.json` behind [`trusted_root`].
pub fn root_json() -> Vec<u8> {
    let signed = RootSigned::new(
        datetime!(2031-01-01 00:00 UTC),
        (&[key(1).public()], 1),
        (&[key(10).public()], 1),
    )
    .unwrap();
    let mut file = RootFile::unsigned(signed);
    file.sign(&key(1));
    file.to_json()
}

fn sign_bundle(version: &str, security_version: u64, payload: Payload, bytes: &[u8]) -> Vec<u8> {
    let manifest = Manifest::new(
        PRODUCT.parse().unwrap(),
        version.parse().unwrap(),
        security_version,
        datetime!(2026-05-01 00:00 UTC),
        vec![payload],
    )
    .unwrap();
    let sigs = bundle::sign_manifest(&manifest, &[key(10)]);
    let mut reader: &[u8] = bytes;
    let mut sources: Vec<&mut dyn Read> = vec![&mut reader];
    let mut out = Vec::new();
    bundle::write_bundle(&mut out, &manifest, &sigs, &mut sources, &mut |_| {}).unwrap();
    out
}

/// A full bundle of `image`.
pub fn full_bundle(version: &str, security_version: u64, image: &[u8]) -> Vec<u8> {
    let payload = Payload::full(
        "rootfs".parse().unwrap(),
        image.len() as u64,
        Sha256Digest::of(image),
    );
    sign_bundle(version, security_version, payload, image)
}

/// A delta bundle turning `old` (release `old_version`) into `new`.
pub fn delta_bundle(version: &str, old_version: &str, old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut patch = Vec::new();
    delta::diff(old, new, &DiffOptions::default(), &mut patch).unwrap();
    let r = |b: &[u8]| ImageRef {
        size: b.len() as u64,
        sha256: Sha256Digest::of(b),
    };
    let source = SourceRef {
        version: old_version.parse().unwrap(),
        sha256: Sha256Digest::of(old),
    };
    let payload = Payload::delta("rootfs".parse().unwrap(), r(&patch), r(new), source);
    sign_bundle(version, 1, payload, &patch)
}

/// Store `bytes` in the artifact directory; the artifact names it by digest.
pub fn publish(dir: &Path, bytes: &[u8]) -> Artifact {
    let sha256 = Sha256::of(bytes);
    std::fs::write(dir.join(sha256.to_hex()), bytes).unwrap();
    Artifact {
        url: format!("https://server.invalid/v1/artifacts/{sha256}"),
        sha256,
        size: bytes.len() as u64,
    }
}

/// Crash points on the rail: each one is a 1-byte write to a scratch device, so it counts as an op
/// and fails once the power is cut.
#[derive(Debug)]
pub struct RailCrash(Mutex<FaultyDevice<MemDevice>>);

impl RailCrash {
    pub fn new(rail: &PowerRail) -> Self {
        Self(Mutex::new(FaultyDevice::new(
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

/// The watchdog's clock reads the agent's virtual clock.
#[derive(Debug, Clone)]
pub struct WatchdogClock(pub ManualClock);

impl halyard_hardware::watchdog::Clock for WatchdogClock {
    fn now(&self) -> Duration {
        Duration::from_secs(halyard_node::clock::Clock::now(&self.0))
    }
}

pub type Boot = EnvBootControl<Box<dyn EnvStore>>;

/// Where the simulated bootloader keeps its variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// A GRUB environment block, updated in place.
    Grub,
    /// A redundant U-Boot environment (two CRC'd copies, flags pick the newer).
    UBootRedundant,
}

const UBOOT_COPY: usize = 1024;

/// The persistent parts of one simulated device.
#[derive(Debug, Clone)]
pub struct Device {
    pub slots: [MemDevice; 2],
    pub env: MemDevice,
    pub env_kind: EnvKind,
    pub data_dir: PathBuf,
    pub artifacts: PathBuf,
    pub power: FakePower,
    pub clock: ManualClock,
    pub factory: Image,
    pub checks: Vec<Check>,
    /// The health settings' start-up grace (zero unless a test sets it).
    pub startup_grace: Duration,
}

impl Device {
    /// A device with `v1` in slot A (good, booted), slot B empty.
    pub fn new(root: &Path, artifacts: &Path, v1: &[u8]) -> Self {
        Self::with_env(root, artifacts, v1, EnvKind::Grub)
    }

    /// A device with `v1` in slot A (good, booted), slot B empty, the environment of `env_kind`.
    pub fn with_env(root: &Path, artifacts: &Path, v1: &[u8], env_kind: EnvKind) -> Self {
        let data_dir = root.join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let mut a = vec![0u8; SLOT_SIZE];
        a[..v1.len()].copy_from_slice(v1);
        let device = Self {
            slots: [
                MemDevice::from_bytes("slot-a", a),
                MemDevice::new("slot-b", SLOT_SIZE),
            ],
            env: match env_kind {
                EnvKind::Grub => {
                    MemDevice::from_bytes("grubenv", GrubEnvBlock::new(1024).as_bytes().to_vec())
                }
                EnvKind::UBootRedundant => MemDevice::new("uboot-env", 2 * UBOOT_COPY),
            },
            env_kind,
            data_dir,
            artifacts: artifacts.to_path_buf(),
            power: FakePower::new(),
            clock: ManualClock::at(now()),
            factory: image_of("1.0.0", v1),
            checks: vec![Check::Command {
                program: "/bin/true".into(),
                args: vec![],
                timeout: Duration::from_secs(5),
            }],
            startup_grace: Duration::ZERO,
        };
        if env_kind == EnvKind::UBootRedundant {
            let vars = [("bootcmd", "run halyard")].into_iter().collect();
            device.uboot(&PowerRail::always_on()).format(&vars).unwrap();
        }
        device.boot_control(&PowerRail::always_on()).provision().unwrap();
        device
    }

    fn env_dev(&self, rail: &PowerRail) -> Box<dyn BlockDevice> {
        Box::new(FaultyDevice::new(self.env.clone(), rail.clone()))
    }

    fn uboot(&self, rail: &PowerRail) -> UBootEnv<Box<dyn BlockDevice>> {
        UBootEnv::redundant(
            (self.env_dev(rail), 0),
            (self.env_dev(rail), UBOOT_COPY as u64),
            UBOOT_COPY,
        )
    }

    pub fn boot_control(&self, rail: &PowerRail) -> Boot {
        let store: Box<dyn EnvStore> = match self.env_kind {
            EnvKind::Grub => Box::new(GrubEnv::new(self.env_dev(rail))),
            EnvKind::UBootRedundant => Box::new(self.uboot(rail)),
        };
        EnvBootControl::new(store, CurrentSlotSource::Env)
    }

    /// The bootloader's step at power-on.
    pub fn bootloader(
        &self,
        rail: &PowerRail,
    ) -> Result<halyard_hardware::Slot, halyard_hardware::BootError> {
        self.boot_control(rail).simulate_boot()
    }

    pub fn settings(&self) -> Settings {
        Settings {
            data_dir: self.data_dir.clone(),
            product: PRODUCT.parse().unwrap(),
            hardware_class: "sim".into(),
            root: trusted_root(),
            limits: Limits::DEFAULT,
            policy: Policy::default(),
            health: HealthSettings {
                checks: self.checks.clone(),
                stability_window: Duration::from_secs(60),
                interval: Duration::from_secs(10),
                startup_grace: self.startup_grace,
            },
            chunk: 16 * 1024,
            fetch_attempts: 3,
            factory: self.factory.clone(),
        }
    }

    fn hardware(&self, rail: &PowerRail) -> Hardware {
        let slot =
            |m: &MemDevice| -> Box<dyn BlockDevice> { Box::new(FaultyDevice::new(m.clone(), rail.clone())) };
        let watchdog = FakeWatchdog::new(
            WatchdogClock(self.clock.clone()),
            self.power.clone(),
            Duration::from_secs(30),
        );
        Hardware {
            boot: Box::new(self.boot_control(rail)),
            slots: [slot(&self.slots[0]), slot(&self.slots[1])],
            power: Box::new(self.power.clone()),
            watchdog: Box::new(watchdog),
            files: halyard_node::files::DiskFiles::shared(),
        }
    }

    /// Start the agent on `rail` (after the bootloader step).
    pub fn start(&self, rail: &PowerRail) -> Result<(Driver, Halt), halyard_node::driver::DriverError> {
        self.start_with(rail, Box::new(DirFetcher::new(&self.artifacts)))
    }

    /// Start the agent on `rail` with `fetcher`.
    pub fn start_with(
        &self,
        rail: &PowerRail,
        fetcher: Box<dyn halyard_node::fetch::Fetcher>,
    ) -> Result<(Driver, Halt), halyard_node::driver::DriverError> {
        Driver::start(
            self.settings(),
            self.hardware(rail),
            fetcher,
            Arc::new(self.clock.clone()),
            Arc::new(RailCrash::new(rail)),
        )
    }

    /// SHA-256 of the first `len` bytes of a slot.
    pub fn slot_hash(&self, slot: halyard_hardware::Slot, len: u64) -> Sha256 {
        let mut dev = self.slots[slot.index()].clone();
        Sha256(hash_prefix(&mut dev, len).unwrap())
    }

    /// The boot variables as stored.
    pub fn boot_env(&self) -> halyard_hardware::boot::select::BootEnv {
        self.boot_control(&PowerRail::always_on()).boot_env().unwrap()
    }
}

/// The desired state installing `version` from `full`, offering `deltas`.
pub fn install(version: &str, full: &Artifact, deltas: Vec<DeltaOffer>) -> DesiredAction {
    DesiredAction::Install {
        version: version.into(),
        bundle: full.clone(),
        deltas,
        window: None,
        deadline: None,
    }
}

/// Current slot per the stored environment, via the boot control contract.
pub fn current_slot(device: &Device) -> halyard_hardware::Slot {
    device
        .boot_control(&PowerRail::always_on())
        .current_slot()
        .unwrap()
}

/// How a run ended.
#[derive(Debug)]
pub struct Finished {
    /// The agent after its last start, settled.
    pub driver: Driver,
    /// Boots (bootloader steps) taken.
    pub boots: u32,
    /// Whether the power was cut on the way.
    pub cut: bool,
}

/// Power the device on with `rail` and keep booting (bootloader step, agent start, desired state
/// delivered as a retained message would be) until the agent settles. After a cut the power comes
/// back on a fresh rail. `kernel_ok` decides whether a booted image comes up far enough to start the
/// agent (false models a kernel panic: the box reboots without the agent running).
pub fn run(
    device: &Device,
    desired: &DesiredAction,
    mut rail: PowerRail,
    kernel_ok: &dyn Fn(&Device, halyard_hardware::Slot) -> bool,
) -> Finished {
    let mut cut = false;
    for boots in 1..=12 {
        if rail.is_cut() {
            rail = PowerRail::always_on();
            cut = true;
        }
        let slot = match device.bootloader(&rail) {
            Err(_) if rail.is_cut() => continue,
            other => other.unwrap(),
        };
        if !kernel_ok(device, slot) {
            continue;
        }
        let (mut driver, halt) = match device.start(&rail) {
            Err(_) if rail.is_cut() => continue,
            other => other.unwrap(),
        };
        let halt = match halt {
            Halt::Waiting => match driver.desired(Some("r1".into()), desired.clone()) {
                Err(_) if rail.is_cut() => continue,
                other => other.unwrap(),
            },
            Halt::Rebooting => Halt::Rebooting,
        };
        if halt == Halt::Rebooting {
            device.power.take_events();
            continue;
        }
        assert!(driver.state().is_settled(), "waiting in {:?}", driver.state());
        return Finished { driver, boots, cut };
    }
    panic!("no settled state after 12 boots");
}

/// Every booted image is healthy enough to start the agent.
pub fn always_boots(_: &Device, _: halyard_hardware::Slot) -> bool {
    true
}
