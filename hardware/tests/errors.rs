//! Errors name the backend, the path and the slot, and bad configurations are refused clearly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use halyard_hardware::Slot;
use halyard_hardware::block::MemDevice;
use halyard_hardware::block::faulty::{FaultyDevice, PowerRail};
use halyard_hardware::boot::grubenv::{GrubEnv, GrubEnvBlock};
use halyard_hardware::boot::ubootenv::UBootEnv;
use halyard_hardware::boot::vars::EnvVars;
use halyard_hardware::boot::{BootControl, CurrentSlotSource, EnvBootControl, EnvStore};
use halyard_hardware::error::BootError;

#[test]
fn a_failed_write_names_backend_path_operation_and_slot() {
    let mem = MemDevice::new("/dev/mmcblk0boot1", 2048);
    let mut store = UBootEnv::single(mem.clone(), 0, 2048);
    store.format(&EnvVars::new()).unwrap();
    let dev = FaultyDevice::new(mem, PowerRail::always_on()).eio_on_writes_after(0);
    let mut boot = EnvBootControl::new(UBootEnv::single(dev, 0, 2048), CurrentSlotSource::Env);
    let err = boot.set_next(Slot::B, 3).unwrap_err();
    assert!(
        matches!(
            err,
            BootError::Operation {
                op: "set_next",
                slot: Slot::B,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("ubootenv /dev/mmcblk0boot1: set_next(B) failed"),
        "{text}"
    );
    assert!(text.contains("Input/output error"), "{text}");
}

#[test]
fn corrupt_environments_are_reported_not_guessed() {
    let mut grub = GrubEnv::new(MemDevice::new("grubenv", 1024));
    let err = grub.load().unwrap_err().to_string();
    assert!(
        err.contains("grubenv grubenv: corrupt environment: missing GRUB environment signature"),
        "{err}"
    );

    let mut uboot = UBootEnv::redundant((MemDevice::new("a", 64), 0), (MemDevice::new("b", 64), 0), 64);
    let err = uboot.load().unwrap_err().to_string();
    assert!(err.contains("no valid copy") && err.contains("BadCrc"), "{err}");

    let full = GrubEnvBlock::new(64);
    let mut small = GrubEnv::new(MemDevice::from_bytes("tiny", full.as_bytes().to_vec()));
    let vars: EnvVars = [("HALYARD_A_PRIORITY", "1"), ("HALYARD_A_TRIES", "0"), ("x", "1")]
        .into_iter()
        .collect();
    let err = small.store(&vars).unwrap_err();
    assert!(matches!(err, BootError::TooLarge { capacity: 64, .. }), "{err}");
}

#[test]
fn fw_env_config_must_describe_one_or_two_copies() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env.bin");
    std::fs::write(&env, vec![0u8; 0x3000]).unwrap();
    let config = dir.path().join("fw_env.config");
    let cases = [
        ("# comment only\n".to_owned(), "0 environment lines"),
        (
            format!(
                "{0} 0 0x1000\n{0} 0x1000 0x1000\n{0} 0x2000 0x1000\n",
                env.display()
            ),
            "3 environment lines",
        ),
        (format!("{} zero 0x1000\n", env.display()), "bad number"),
        (format!("{}\n", env.display()), "expected `device offset size`"),
        ("/nonexistent/env 0 0x1000\n".to_owned(), "/nonexistent/env"),
    ];
    for (text, want) in cases {
        std::fs::write(&config, &text).unwrap();
        let err = UBootEnv::open_fw_env_config(&config).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
    std::fs::write(
        &config,
        format!("{0} 0 0x1000\n{0} 0x1000 0x1000\n", env.display()),
    )
    .unwrap();
    let store = UBootEnv::open_fw_env_config(&config).unwrap();
    assert_eq!(
        store.layout(),
        halyard_hardware::boot::ubootenv::Layout::Redundant
    );
}
