//! Download resume, transient fetch errors, reboot windows and operator reverts (switch to the other
//! slot), through the real driver on simulated hardware.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use halyard_hardware::Slot::{A, B};
use halyard_hardware::block::faulty::PowerRail;
use halyard_node::driver::Halt;
use halyard_node::fetch::{DirFetcher, FetchError, Fetcher};
use halyard_node::fsm::State;
use halyard_protocol::{DesiredAction, Sha256, Window};
use support::*;

/// What the wrapped fetcher served, and a fault plan: fail the listed calls with EIO, or cut the
/// power after serving a number of calls.
#[derive(Debug, Default)]
struct Plan {
    calls: u64,
    bytes: u64,
    eio_calls: Vec<u64>,
    cut_after_calls: Option<(u64, PowerRail)>,
}

#[derive(Debug, Clone)]
struct Faulty {
    inner: DirFetcher,
    plan: Arc<Mutex<Plan>>,
}

impl Fetcher for Faulty {
    fn fetch_range(&mut self, url: &str, range: Range<u64>, out: &mut dyn Write) -> Result<(), FetchError> {
        let mut plan = self.plan.lock().unwrap();
        plan.calls += 1;
        if plan.eio_calls.contains(&plan.calls) {
            let source = std::io::Error::from_raw_os_error(5);
            return Err(FetchError::Io {
                url: url.into(),
                source,
            });
        }
        if let Some((after, rail)) = &plan.cut_after_calls
            && plan.calls > *after
        {
            rail.cut_now();
        }
        plan.bytes += range.end - range.start;
        self.inner.fetch_range(url, range, out)
    }
}

fn v1v2() -> (Vec<u8>, Vec<u8>) {
    let v1 = image_bytes(200 * 1024, 21);
    let mut v2 = v1.clone();
    v2[100..5000].fill(7);
    (v1, v2)
}

#[test]
fn a_cut_download_resumes_from_its_durable_offset() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (v1, v2) = v1v2();
    let full = publish(arts.path(), &full_bundle("2.0.0", 1, &v2));
    let device = Device::new(tmp.path(), arts.path(), &v1);
    let rail = PowerRail::cut_at(
        halyard_hardware::block::faulty::CutPoint::Never,
        Default::default(),
    );
    let plan = Arc::new(Mutex::new(Plan {
        cut_after_calls: Some((5, rail.clone())),
        ..Plan::default()
    }));
    let fetcher = Faulty {
        inner: DirFetcher::new(arts.path()),
        plan: plan.clone(),
    };
    device.bootloader(&rail).unwrap();
    let (mut driver, _) = device.start_with(&rail, Box::new(fetcher.clone())).unwrap();
    assert!(
        driver
            .desired(Some("r1".into()), install("2.0.0", &full, vec![]))
            .is_err(),
        "power lost"
    );
    drop(driver);
    let chunk = device.settings().chunk;
    assert_eq!(
        plan.lock().unwrap().bytes,
        6 * chunk,
        "five chunks durable, the sixth lost with the power"
    );
    // The second life fetches only what was not durable.
    let rail = PowerRail::always_on();
    let again = Arc::new(Mutex::new(Plan::default()));
    let fetcher = Faulty {
        inner: DirFetcher::new(arts.path()),
        plan: again.clone(),
    };
    device.bootloader(&rail).unwrap();
    let (driver, halt) = device.start_with(&rail, Box::new(fetcher)).unwrap();
    assert_eq!(halt, Halt::Rebooting);
    assert!(matches!(driver.state(), State::Rebooting { armed: true, .. }));
    assert_eq!(again.lock().unwrap().bytes, full.size - 5 * chunk);
}

#[test]
fn transient_fetch_errors_are_retried() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (v1, v2) = v1v2();
    let full = publish(arts.path(), &full_bundle("2.0.0", 1, &v2));
    let device = Device::new(tmp.path(), arts.path(), &v1);
    let rail = PowerRail::always_on();
    let plan = Arc::new(Mutex::new(Plan {
        eio_calls: vec![2, 3, 7],
        ..Plan::default()
    }));
    let fetcher = Faulty {
        inner: DirFetcher::new(arts.path()),
        plan: plan.clone(),
    };
    device.bootloader(&rail).unwrap();
    let (mut driver, _) = device.start_with(&rail, Box::new(fetcher)).unwrap();
    assert_eq!(
        driver.desired(None, install("2.0.0", &full, vec![])).unwrap(),
        Halt::Rebooting
    );
    // Three failures in a row exhaust the three attempts of one chunk.
    drop(driver);
    let tmp2 = tempfile::tempdir().unwrap();
    let device = Device::new(tmp2.path(), arts.path(), &v1);
    let plan = Arc::new(Mutex::new(Plan {
        eio_calls: vec![1, 2, 3],
        ..Plan::default()
    }));
    let fetcher = Faulty {
        inner: DirFetcher::new(arts.path()),
        plan,
    };
    device.bootloader(&rail).unwrap();
    let (mut driver, _) = device.start_with(&rail, Box::new(fetcher)).unwrap();
    assert_eq!(
        driver.desired(None, install("2.0.0", &full, vec![])).unwrap(),
        Halt::Waiting
    );
    let State::Failed { reason, .. } = driver.state() else {
        panic!("{:?}", driver.state())
    };
    assert!(reason.contains("Input/output error"), "{reason}");
}

#[test]
fn staged_images_wait_for_their_window() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (v1, v2) = v1v2();
    let full = publish(arts.path(), &full_bundle("2.0.0", 1, &v2));
    let device = Device::new(tmp.path(), arts.path(), &v1);
    let rail = PowerRail::always_on();
    let opens = now() + 3600;
    let desired = DesiredAction::Install {
        version: "2.0.0".into(),
        bundle: full,
        deltas: vec![],
        window: Some(Window {
            not_before: opens,
            not_after: opens + 600,
        }),
        deadline: None,
    };
    device.bootloader(&rail).unwrap();
    let (mut driver, _) = device.start(&rail).unwrap();
    assert_eq!(driver.desired(None, desired).unwrap(), Halt::Waiting);
    assert!(matches!(driver.state(), State::Staged(_)));
    device.clock.advance(Duration::from_secs(3599));
    assert_eq!(driver.settle().unwrap(), Halt::Waiting);
    device.clock.advance(Duration::from_secs(1));
    assert_eq!(driver.settle().unwrap(), Halt::Rebooting);
}

#[test]
fn switch_reverts_to_the_release_in_the_other_slot_without_download() {
    let (tmp, arts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (v1, v2) = v1v2();
    let full = publish(arts.path(), &full_bundle("2.0.0", 1, &v2));
    let device = Device::new(tmp.path(), arts.path(), &v1);
    let done = run(
        &device,
        &install("2.0.0", &full, vec![]),
        PowerRail::always_on(),
        &always_boots,
    );
    assert_eq!(current_slot(&device), B);
    drop(done);
    std::fs::remove_dir_all(arts.path()).unwrap();
    let revert = DesiredAction::Switch {
        version: "1.0.0".into(),
        image_sha256: Sha256::of(&v1),
    };
    let done = run(&device, &revert, PowerRail::always_on(), &always_boots);
    let State::Committed { slot, image, .. } = done.driver.state() else {
        panic!("{:?}", done.driver.state())
    };
    assert_eq!(
        (*slot, image.version.as_str()),
        (halyard_protocol::Slot::A, "1.0.0")
    );
    assert_eq!((current_slot(&device), done.boots), (A, 2));
    assert_eq!(
        done.driver.record().security_floor,
        1,
        "a revert never lowers the floor"
    );
    // A switch to something the other slot does not hold fails without touching the bootloader.
    drop(done);
    let bogus = DesiredAction::Switch {
        version: "9.9.9".into(),
        image_sha256: Sha256::of(b"nothing"),
    };
    let done = run(&device, &bogus, PowerRail::always_on(), &always_boots);
    assert!(matches!(done.driver.state(), State::Failed { reason, .. } if reason.contains("does not hold")));
    assert_eq!(current_slot(&device), A);
}
