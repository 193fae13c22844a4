//! Every boot-control backend passes the one conformance suite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use halyard_hardware::block::MemDevice;
use halyard_hardware::block::faulty::{FaultyDevice, PowerRail};
use halyard_hardware::block::file::FileDevice;
use halyard_hardware::boot::file::FileEnv;
use halyard_hardware::boot::grubenv::{DEFAULT_SIZE, GrubEnv, GrubEnvBlock};
use halyard_hardware::boot::ubootenv::UBootEnv;
use halyard_hardware::boot::vars::EnvVars;
use halyard_hardware::boot::{BootControl, CurrentSlotSource, EnvBootControl};
use halyard_hardware::conformance::check_boot_control;

const SIZE: usize = 0x1000;

fn report(name: &str, result: Result<usize, halyard_hardware::conformance::ConformanceFailure>) {
    let checks = result.unwrap_or_else(|e| panic!("{e}"));
    println!("{name}: {checks} checks passed");
    assert!(checks > 50, "{name}: the suite ran only {checks} checks");
}

#[test]
fn file_fake_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    report(
        "file",
        check_boot_control(|| {
            n += 1;
            FileEnv::boot_control(dir.path().join(format!("env{n}")))
        }),
    );
}

#[test]
fn grubenv_file_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    report(
        "grubenv file",
        check_boot_control(|| {
            n += 1;
            let store = GrubEnv::create_file(dir.path().join(format!("grubenv{n}"))).unwrap();
            EnvBootControl::new(store, CurrentSlotSource::Env)
        }),
    );
}

#[test]
fn grubenv_on_a_cached_device_conforms() {
    report(
        "grubenv faulty(mem)",
        check_boot_control(|| {
            let mem = MemDevice::from_bytes("grubenv", GrubEnvBlock::new(DEFAULT_SIZE).as_bytes().to_vec());
            let store = GrubEnv::new(FaultyDevice::new(mem, PowerRail::always_on()));
            EnvBootControl::new(store, CurrentSlotSource::Env)
        }),
    );
}

#[test]
fn ubootenv_single_file_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    report(
        "ubootenv single",
        check_boot_control(|| {
            n += 1;
            let path = dir.path().join(format!("uboot{n}.env"));
            std::fs::write(&path, vec![0u8; SIZE]).unwrap();
            let mut store = UBootEnv::single(FileDevice::open(&path).unwrap(), 0, SIZE);
            store.format(&EnvVars::new()).unwrap();
            let mut boot = EnvBootControl::new(store, CurrentSlotSource::Env);
            boot.provision().unwrap();
            boot
        }),
    );
}

#[test]
fn ubootenv_redundant_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    report(
        "ubootenv redundant",
        check_boot_control(|| {
            n += 1;
            let path = dir.path().join(format!("uboot{n}.env"));
            std::fs::write(&path, vec![0u8; 2 * SIZE]).unwrap();
            let copy = |offset| (FileDevice::open(&path).unwrap(), offset);
            let mut store = UBootEnv::redundant(copy(0), copy(SIZE as u64), SIZE);
            store.format(&EnvVars::new()).unwrap();
            EnvBootControl::new(store, CurrentSlotSource::Env)
        }),
    );
}

#[test]
fn kernel_cmdline_source_reports_the_booted_slot() {
    let dir = tempfile::tempdir().unwrap();
    let cmdline = dir.path().join("cmdline");
    std::fs::write(
        &cmdline,
        "console=ttyS0 root=PARTLABEL=root_b halyard.slot=B ro\n",
    )
    .unwrap();
    let store = FileEnv::new(dir.path().join("env"));
    let mut boot = EnvBootControl::new(store, CurrentSlotSource::KernelCmdline(cmdline.clone()));
    assert_eq!(boot.current_slot().unwrap(), halyard_hardware::Slot::B);
    std::fs::write(&cmdline, "console=ttyS0\n").unwrap();
    let err = boot.current_slot().unwrap_err().to_string();
    assert!(err.contains("halyard.slot") && err.contains("cmdline"), "{err}");
}
