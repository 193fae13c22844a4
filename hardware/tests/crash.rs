//! Power cuts at every write boundary of boot-environment updates (GRUB, U-Boot single and redundant)
//! and of a slot install, checking after each cut that the environment parses and the bootloader
//! still picks a bootable slot (and, for the install, that no bootable slot is half-written).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use halyard_hardware::Slot::{self, A, B};
use halyard_hardware::block::faulty::{CutPoint, FaultyDevice, PowerRail, Unflushed};
use halyard_hardware::block::file::AtomicFile;
use halyard_hardware::block::slot_writer::{hash_prefix, write_slot};
use halyard_hardware::block::{BlockDevice, MemDevice};
use halyard_hardware::boot::grubenv::{GrubEnv, GrubEnvBlock};
use halyard_hardware::boot::select::{BootEnv, boot_attempt};
use halyard_hardware::boot::ubootenv::UBootEnv;
use halyard_hardware::boot::{BootControl, CurrentSlotSource, EnvBootControl, EnvStore, SimulatedBoot};
use halyard_hardware::error::BootError;
use sha2::{Digest, Sha256};

const UBOOT_SIZE: usize = 1024;
const GRUB_SIZE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    GrubInPlace,
    GrubFile,
    UBootRedundant,
    UBootSingleFile,
    UBootSingleInPlace,
}

/// The persistent medium of one simulated device's environment: memory or a file.
struct Medium {
    kind: Kind,
    mem: MemDevice,
    file: PathBuf,
    initial: Vec<u8>,
}

type Boot = EnvBootControl<Box<dyn EnvStore>>;

impl Medium {
    fn new(kind: Kind, dir: &Path) -> Self {
        let size = if kind == Kind::UBootRedundant {
            2 * UBOOT_SIZE
        } else {
            UBOOT_SIZE.max(GRUB_SIZE)
        };
        let initial = match kind {
            Kind::GrubInPlace | Kind::GrubFile => GrubEnvBlock::new(GRUB_SIZE).as_bytes().to_vec(),
            _ => vec![0; size],
        };
        let mut medium = Self {
            kind,
            mem: MemDevice::new("env", 0),
            file: dir.join(format!("{kind:?}.env")),
            initial,
        };
        medium.reset();
        let mut boot = medium.open(&PowerRail::always_on());
        if let Some(store) = medium.uboot(&PowerRail::always_on()) {
            let mut store = store;
            store
                .format(&[("bootcmd", "run halyard")].into_iter().collect())
                .unwrap();
        }
        boot.provision().unwrap();
        drop(boot);
        medium.initial = medium.bytes();
        medium
    }

    fn reset(&mut self) {
        match self.kind {
            Kind::GrubFile | Kind::UBootSingleFile => std::fs::write(&self.file, &self.initial).unwrap(),
            _ => self.mem = MemDevice::from_bytes("env", self.initial.clone()),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self.kind {
            Kind::GrubFile | Kind::UBootSingleFile => std::fs::read(&self.file).unwrap(),
            _ => self.mem.snapshot(),
        }
    }

    fn faulty_mem(&self, rail: &PowerRail) -> FaultyDevice<MemDevice> {
        FaultyDevice::new(self.mem.clone(), rail.clone())
    }

    fn faulty_file(&self, rail: &PowerRail) -> FaultyDevice<AtomicFile> {
        FaultyDevice::new(AtomicFile::open(&self.file).unwrap(), rail.clone())
    }

    fn uboot(&self, rail: &PowerRail) -> Option<UBootEnv<Box<dyn BlockDevice>>> {
        let boxed = |d: FaultyDevice<MemDevice>| -> Box<dyn BlockDevice> { Box::new(d) };
        match self.kind {
            Kind::UBootRedundant => Some(UBootEnv::redundant(
                (boxed(self.faulty_mem(rail)), 0),
                (boxed(self.faulty_mem(rail)), UBOOT_SIZE as u64),
                UBOOT_SIZE,
            )),
            Kind::UBootSingleInPlace => Some(UBootEnv::single(boxed(self.faulty_mem(rail)), 0, UBOOT_SIZE)),
            Kind::UBootSingleFile => Some(UBootEnv::single(Box::new(self.faulty_file(rail)), 0, UBOOT_SIZE)),
            Kind::GrubInPlace | Kind::GrubFile => None,
        }
    }

    fn open(&self, rail: &PowerRail) -> Boot {
        let store: Box<dyn EnvStore> = match self.kind {
            Kind::GrubInPlace => Box::new(GrubEnv::new(self.faulty_mem(rail))),
            Kind::GrubFile => Box::new(GrubEnv::new(self.faulty_file(rail))),
            _ => Box::new(self.uboot(rail).expect("a U-Boot kind")),
        };
        EnvBootControl::new(store, CurrentSlotSource::Env)
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Unbootable(Slot),
    SetNext(Slot, u8),
    Boot,
    Success(Slot),
}

/// A committed update to B, then a trial of A that fails three times and falls back to B.
const STEPS: [Step; 9] = [
    Step::Unbootable(B),
    Step::SetNext(B, 3),
    Step::Boot,
    Step::Success(B),
    Step::SetNext(A, 3),
    Step::Boot,
    Step::Boot,
    Step::Boot,
    Step::Boot,
];

fn apply(boot: &mut Boot, step: Step) -> Result<(), BootError> {
    match step {
        Step::Unbootable(s) => boot.mark_unbootable(s),
        Step::SetNext(s, t) => boot.set_next(s, t),
        Step::Boot => boot.simulate_boot().map(|_| ()),
        Step::Success(s) => boot.mark_successful(s),
    }
}

/// Run the steps until one fails; returns how many completed.
fn run_steps(boot: &mut Boot) -> usize {
    STEPS.iter().take_while(|s| apply(boot, **s).is_ok()).count()
}

/// After a cut: the environment as the bootloader will read it, or why it cannot.
fn after_cut(medium: &Medium) -> Result<BootEnv, BootError> {
    medium.open(&PowerRail::always_on()).boot_env()
}

fn check_bootable(env: &BootEnv, what: &str) {
    let (slot, _) = boot_attempt(env);
    assert!(
        env.state(slot).bootable,
        "{what}: bootloader picks unbootable slot {slot} in {env:?}"
    );
}

/// A torn in-place GRUB write may mix old and new, but only value by value: every variable holds
/// its old or its new value, never a third one (values are fixed-width and lines stay put).
fn assert_fieldwise_mix(env: &BootEnv, allowed: &[BootEnv], what: &str) {
    for slot in [A, B] {
        let got = env.slot(slot);
        let from = |f: &dyn Fn(&BootEnv) -> u8| allowed.iter().map(f).collect::<Vec<_>>();
        assert!(
            from(&|e| e.slot(slot).priority).contains(&got.priority),
            "{what}: priority {env:?}"
        );
        assert!(
            from(&|e| e.slot(slot).tries).contains(&got.tries),
            "{what}: tries {env:?}"
        );
        assert!(
            from(&|e| u8::from(e.slot(slot).successful)).contains(&u8::from(got.successful)),
            "{what}"
        );
    }
    assert!(
        allowed.iter().any(|e| e.booted == env.booted),
        "{what}: booted {env:?}"
    );
}

struct Tally {
    cuts: usize,
    unparsable: usize,
}

/// A scratch directory, on tmpfs when there is one: the file kinds fsync on every store, and what
/// is tested here is the replace-on-flush model, not the disk's fsync latency.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn crash_env_updates(kind: Kind) -> Tally {
    let dir = scratch();
    let mut medium = Medium::new(kind, dir.path());
    // Dry run: the states between steps, and how much I/O the sequence does.
    let rail = PowerRail::always_on();
    let mut boot = medium.open(&rail);
    let mut states = vec![boot.boot_env().unwrap()];
    for step in STEPS {
        apply(&mut boot, step).unwrap();
        states.push(boot.boot_env().unwrap());
    }
    drop(boot);
    let io = rail.counters();
    assert!(io.writes >= 8 && io.flushes >= 8, "{kind:?}: {io:?}");
    let mut points: Vec<(CutPoint, Unflushed)> = (0..=io.bytes)
        .map(|n| (CutPoint::AfterBytes(n), Unflushed::Torn))
        .collect();
    for ops in 0..=io.writes + io.flushes {
        points.push((CutPoint::AfterOps(ops), Unflushed::Lost));
        points.push((CutPoint::AfterOps(ops), Unflushed::Torn));
    }
    let mut tally = Tally {
        cuts: 0,
        unparsable: 0,
    };
    for (point, unflushed) in points {
        medium.reset();
        let rail = PowerRail::cut_at(point, unflushed);
        let done = run_steps(&mut medium.open(&rail));
        let what = format!("{kind:?} cut {point:?} {unflushed:?} after {done} steps");
        tally.cuts += 1;
        match after_cut(&medium) {
            Ok(env) => {
                check_bootable(&env, &what);
                let allowed = &states[done..(done + 2).min(states.len())];
                if kind == Kind::GrubInPlace {
                    assert_fieldwise_mix(&env, allowed, &what);
                } else {
                    // Atomic layouts, and a single U-Boot copy whenever its CRC is intact.
                    assert!(allowed.contains(&env), "{what}: {env:?} is neither {allowed:?}");
                }
            }
            Err(e) if kind == Kind::UBootSingleInPlace => {
                assert!(matches!(e, BootError::Corrupt { .. }), "{what}: {e}");
                tally.unparsable += 1;
            }
            Err(e) => panic!("{what}: environment does not parse: {e}"),
        }
    }
    tally
}

#[test]
fn env_updates_survive_a_cut_at_every_write_boundary() {
    let mut total = 0;
    for kind in [
        Kind::GrubInPlace,
        Kind::GrubFile,
        Kind::UBootRedundant,
        Kind::UBootSingleFile,
    ] {
        let tally = crash_env_updates(kind);
        println!(
            "{kind:?}: {} cut points, all parse and pick a bootable slot",
            tally.cuts
        );
        assert!(tally.cuts > 2000, "{kind:?}: only {} cut points", tally.cuts);
        assert_eq!(tally.unparsable, 0);
        total += tally.cuts;
    }
    println!("env crash test: {total} cut points tried");
}

/// The documented risk of a single U-Boot copy written in place: a torn write breaks the CRC and
/// U-Boot falls back to its built-in environment. This test shows the risk is real (and bounded).
#[test]
fn single_copy_in_place_can_be_torn() {
    let tally = crash_env_updates(Kind::UBootSingleInPlace);
    println!(
        "UBootSingleInPlace: {} cut points, {} leave a bad CRC",
        tally.cuts, tally.unparsable
    );
    assert!(
        tally.unparsable > 0,
        "a torn in-place write must be detectable by its CRC"
    );
    assert!(tally.unparsable < tally.cuts);
}

// ---- slot install -------------------------------------------------------------------------------

const SLOT_SIZE: usize = 16 * 1024;
const IMAGE_LEN: usize = 12 * 1024;
const CHUNK: usize = 1024;

fn image(seed: u8) -> Vec<u8> {
    (0..IMAGE_LEN)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Both slots hold a good release; A runs. The agent installs a new release into B and commits it.
fn install(env_kind: Kind, env: &Medium, slot_b: &MemDevice, rail: &PowerRail) -> Result<(), String> {
    let mut boot = env.open(rail);
    boot.mark_unbootable(B).map_err(|e| e.to_string())?;
    let mut dev = FaultyDevice::new(slot_b.clone(), rail.clone());
    let new = image(2);
    write_slot(&mut dev, B, new.as_slice(), &sha(&new), CHUNK).map_err(|e| e.to_string())?;
    boot.set_next(B, 3).map_err(|e| e.to_string())?;
    let booted = boot.simulate_boot().map_err(|e| e.to_string())?;
    assert_eq!(booted, B, "{env_kind:?}");
    boot.mark_successful(B).map_err(|e| e.to_string())
}

fn crash_install(kind: Kind) -> usize {
    let dir = scratch();
    let mut env = Medium::new(kind, dir.path());
    {
        let mut boot = env.open(&PowerRail::always_on());
        boot.set_next(B, 1).unwrap();
        boot.simulate_boot().unwrap();
        boot.mark_successful(B).unwrap();
        boot.set_next(A, 1).unwrap();
        boot.simulate_boot().unwrap();
        boot.mark_successful(A).unwrap();
        let e = boot.boot_env().unwrap();
        assert!(e.state(A).bootable && e.state(B).bootable && e.booted == Some(A));
    }
    env.initial = env.bytes();
    let mut old_b = image(1);
    old_b.resize(SLOT_SIZE, 0);
    let (old_hash, new_hash) = (sha(&image(1)), sha(&image(2)));
    let slot_b = || MemDevice::from_bytes("slot-b", old_b.clone());
    env.reset();
    let rail = PowerRail::always_on();
    install(kind, &env, &slot_b(), &rail).unwrap();
    let io = rail.counters();
    let mut points: Vec<(CutPoint, Unflushed)> = (0..=io.bytes)
        .map(|n| (CutPoint::AfterBytes(n), Unflushed::Torn))
        .collect();
    for ops in 0..=io.writes + io.flushes {
        points.push((CutPoint::AfterOps(ops), Unflushed::Lost));
        points.push((CutPoint::AfterOps(ops), Unflushed::Torn));
    }
    for (point, unflushed) in &points {
        env.reset();
        let slot = slot_b();
        let rail = PowerRail::cut_at(*point, *unflushed);
        let result = install(kind, &env, &slot, &rail);
        let what = format!("{kind:?} install cut {point:?} {unflushed:?} ({result:?})");
        let state = after_cut(&env).unwrap_or_else(|e| panic!("{what}: env does not parse: {e}"));
        check_bootable(&state, &what);
        // Not only the slot picked now: any slot the bootloader may fall back to must be whole.
        if state.state(B).bootable {
            let hash = hash_prefix(&mut slot.clone(), IMAGE_LEN as u64).unwrap();
            assert!(
                hash == old_hash || hash == new_hash,
                "{what}: B is bootable but half-written"
            );
        }
    }
    points.len()
}

#[test]
fn slot_install_survives_a_cut_at_every_write_boundary() {
    let mut total = 0;
    for kind in [Kind::GrubInPlace, Kind::UBootRedundant] {
        let cuts = crash_install(kind);
        println!("install with {kind:?}: {cuts} cut points, never boots a half-written slot");
        assert!(cuts > IMAGE_LEN, "{kind:?}: only {cuts} cut points");
        total += cuts;
    }
    println!("install crash test: {total} cut points tried");
}
