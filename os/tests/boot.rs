//! End to end under QEMU: reproducible builds of v1, v2, v3 from one spec; v1 boots and enrolls with
//! an in-process `halyard-server` (reached through `guestfwd` onto loopback, `restrict=on`); the v2
//! rollout (server-side delta) is cut by a power loss while slot B is written, the device boots v1
//! again and retries, then commits v2 on slot B; v3 fails its health check, the device falls back to
//! v2 and reports `RolledBack` with the reason, and stays on v2.
//!
//! Every wait has a generous timeout (the machine may be busy with builds) and panics naming its step,
//! with the device's last report and the console's tail. Boot times are printed (`--no-capture`).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use halyard_os::image::{self, BuildOptions, BuildSummary};
use halyard_os::qemu::Vm;
use serde_json::Value;
use support::fleet::{self, Fleet, active, slot_version, state};
use support::{SpecArgs, spec};

const HEALTHY: &str = "";
const UNHEALTHY: &str = "[[health.checks]]\nkind = \"tcp\"\naddr = \"127.0.0.1:9\"\ntimeout_secs = 2\n";
/// Disk write cap of the boot whose power is cut: the slot write then takes seconds, not a blink.
const SLOW_DISK: u64 = 1 << 20;
/// From QEMU's start to the init's switch to the root; generous for a loaded machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// For agent states and reboots (downloads, slot writes, the health window).
const STEP_TIMEOUT: Duration = Duration::from_secs(240);

fn agent_config(extra_check: &str) -> String {
    format!(
        "[server]\nbroker = \"mqtt://10.0.2.100:{m}\"\nurl = \"http://10.0.2.100:{h}\"\n\n\
         [poll]\ntick_secs = 1\nreconnect_min_secs = 1\nreconnect_max_secs = 2\n\n\
         [update]\ntrial_timeout_secs = 90\n\n\
         [health]\nstability_window_secs = 3\ninterval_secs = 1\n\n\
         [[health.checks]]\nkind = \"server\"\ntimeout_secs = 5\n\n{extra_check}",
        m = fleet::GUEST_MQTT,
        h = fleet::GUEST_HTTP
    )
}

fn build(dir: &Path, version: &str, check: &str, token: &str, out: &str, from: Option<&str>) -> BuildSummary {
    let (agent, init) = static_bins();
    let mut args = SpecArgs::dummy(version);
    args.agent = agent;
    args.init = init;
    args.agent_config = Some(agent_config(check));
    args.files = vec![("/etc/motd".into(), format!("Halyard test image {version}\n"))];
    args.token = Some(token.into());
    let spec = spec(dir, &args);
    image::build(&BuildOptions {
        spec,
        out: dir.join(out),
        from: from.map(|f| dir.join(f)),
    })
    .unwrap_or_else(|e| panic!("building {version} into {out}: {e}"))
}

fn static_bins() -> (PathBuf, PathBuf) {
    static BINS: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    BINS.get_or_init(support::static_binaries).clone()
}

/// The guest runs of the test, all on `dir/disk.img`, with their boot times.
struct Boots<'a> {
    dir: &'a Path,
    fleet: &'a Fleet,
    times: Vec<(String, Duration)>,
}

impl Boots<'_> {
    /// Boot and wait for the init to have switched to slot `slot`'s root; records the boot time.
    fn start(&mut self, label: &str, slot: &str, write_bps: Option<u64>) -> Vm {
        let log = self.dir.join("console.log");
        let disk = self.dir.join("disk.img");
        let mut vm = fleet::boot(&self.dir.join("v1a"), &disk, self.fleet, &log, write_bps);
        let up = vm
            .wait_for(&format!("halyard-init: slot {slot} up"), BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("boot {label}: {e}\n{}", fleet::tail(&vm)));
        eprintln!("boot {label}: slot {slot} up after {:.2} s", up.as_secs_f64());
        self.times.push((label.to_owned(), up));
        vm
    }
}

fn console_line(vm: &mut Vm, step: &str, needle: &str) {
    vm.wait_for(needle, STEP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{step}: {e}\n{}", fleet::tail(vm)));
}

fn wait_reboot(vm: &mut Vm, step: &str) {
    let status = vm.wait_exit(STEP_TIMEOUT).unwrap();
    assert!(
        status.is_some(),
        "{step}: the guest did not reboot within {STEP_TIMEOUT:?}\n{}",
        fleet::tail(vm)
    );
}

fn report(d: &Value) -> &Value {
    &d["device"]["report"]
}

/// Step 2: v2 rolls out; the power goes while the agent writes slot B (disk writes are slowed so
/// the cut lands inside the write). Slot B must then hold part of v2 at most.
fn cut_power_while_writing_b(vm: &mut Vm, dir: &Path, fleet: &Fleet) {
    fleet.rollout("to-v2", "2.0.0");
    console_line(vm, "v2 install starts", "installing a server-side delta");
    std::thread::sleep(Duration::from_secs(2));
    vm.kill();
    let (same, blocks) =
        support::slot_progress(&dir.join("disk.img"), "root-b", &dir.join("v2/rootfs.squashfs"));
    eprintln!("power cut while writing slot B: {same} of {blocks} 4 KiB blocks of v2 had reached the disk");
    assert!(
        same < blocks,
        "power cut: slot B already held all of v2; the cut came too late\n{}",
        fleet::tail(vm)
    );
}

/// Step 3: after the cut the device boots v1 from A (B was marked unbootable before the write),
/// retries the update, then boots v2 from B, passes health and commits.
fn retry_and_commit_v2(boots: &mut Boots<'_>, fleet: &Fleet) -> Vm {
    let mut vm = boots.start("2 (v1 again, after the cut)", "A", None);
    console_line(&mut vm, "v2 install retried", "image installed and verified");
    wait_reboot(&mut vm, "reboot into v2 after the retried install");
    let vm = boots.start("3 (v2 trial)", "B", None);
    let d = fleet.wait("v2 committed on slot B", STEP_TIMEOUT, &vm, |r| {
        state(r).contains("committed") && active(r) == "b" && slot_version(r, "b") == "2.0.0"
    });
    eprintln!("after v2: {}", report(&d));
    vm
}

/// Step 4: v3 (health fails) is written to A, tried, given up; the device falls back to v2 on B,
/// reports `RolledBack` with the reason and stays there.
fn roll_back_v3(boots: &mut Boots<'_>, fleet: &Fleet, mut vm: Vm) {
    fleet.wait_rollout("v2 rollout completes", "to-v2", "completed", STEP_TIMEOUT);
    fleet.rollout("to-v3", "3.0.0");
    wait_reboot(&mut vm, "v3 written to slot A, reboot into it");
    let mut vm = boots.start("4 (v3 trial)", "A", None);
    wait_reboot(&mut vm, "v3 gives up its trial and reboots");
    let mut vm = boots.start("5 (back on v2)", "B", None);
    let d = fleet.wait("v3 reported rolled back", STEP_TIMEOUT, &vm, |r| {
        state(r).contains("rolledback") && active(r) == "b" && slot_version(r, "b") == "2.0.0"
    });
    let r = report(&d);
    eprintln!("after v3: {r}");
    assert_eq!(r["state"]["version"], "3.0.0", "{r}");
    assert_eq!(
        slot_version(r, "a"),
        "3.0.0",
        "v3 not in the slot that did not hold v2: {r}"
    );
    assert_eq!(
        r["slot_a"]["bootable"], false,
        "the failed v3 slot is still bootable: {r}"
    );
    let reason = r["state"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("health check failed"),
        "RolledBack without the health reason: {r}"
    );
    let stays = vm.wait_exit(Duration::from_secs(15)).unwrap();
    assert!(
        stays.is_none(),
        "the device left v2 after the rollback\n{}",
        fleet::tail(&vm)
    );
    let r = report(&fleet.device().unwrap()).clone();
    assert!(
        active(&r) == "b" && slot_version(&r, "b") == "2.0.0",
        "not on v2 any more: {r}"
    );
}

#[test]
fn boots_updates_survives_a_power_cut_and_rolls_back() {
    let started = Instant::now();
    static_bins();
    let built = started.elapsed();
    // HALYARD_OS_KEEP=1 keeps the work folder: builds, disk.img, console.log, qemu's command line.
    let keep = std::env::var_os("HALYARD_OS_KEEP").is_some();
    let tmp = tempfile::Builder::new().disable_cleanup(keep).tempdir().unwrap();
    let dir = tmp.path();
    eprintln!("work folder {}", dir.display());
    let root_json = support::keys(dir);
    let fleet = Fleet::start(&dir.join("server"));
    fleet.send("PUT", "/api/v1/trust-root", &root_json, "application/json");
    let token = fleet.server.started.enroll_token.clone();

    // 1. v1 (twice: same bytes), v2 and v3 from one spec.
    let v1 = build(dir, "1.0.0", HEALTHY, &token, "v1a", None);
    let v1b = build(dir, "1.0.0", HEALTHY, &token, "v1b", None);
    assert_eq!(v1.rootfs_sha256, v1b.rootfs_sha256, "root image not reproducible");
    assert_eq!(v1.disk_sha256, v1b.disk_sha256, "disk image not reproducible");
    let v2 = build(dir, "2.0.0", HEALTHY, &token, "v2", Some("v1a"));
    build(dir, "3.0.0", UNHEALTHY, &token, "v3", Some("v2"));
    eprintln!("v1 root {} B; v2 delta bundle {:?}", v1.rootfs_bytes, v2.delta);
    for v in ["v1a", "v2", "v3"] {
        fleet.upload(&dir.join(v).join("full.bundle"));
    }
    std::fs::copy(dir.join("v1a/disk.img"), dir.join("disk.img")).unwrap();
    let images = started.elapsed();
    let mut boots = Boots {
        dir,
        fleet: &fleet,
        times: Vec::new(),
    };

    // 2. v1 boots from A, enrolls and reports.
    let mut vm = boots.start("1 (v1)", "A", Some(SLOW_DISK));
    fleet.wait("v1 enrolled and reported", STEP_TIMEOUT, &vm, |r| {
        slot_version(r, "a") == "1.0.0" && active(r) == "a" && state(r).contains("idle")
    });
    cut_power_while_writing_b(&mut vm, dir, &fleet);
    let vm = retry_and_commit_v2(&mut boots, &fleet);
    roll_back_v3(&mut boots, &fleet, vm);

    for (label, t) in &boots.times {
        eprintln!("boot {label}: {:.2} s to the switched root", t.as_secs_f64());
    }
    eprintln!(
        "static build {:.1} s, images {:.1} s, whole test {:.1} s",
        built.as_secs_f64(),
        (images - built).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
