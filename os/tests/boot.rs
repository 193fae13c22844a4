//! End to end under QEMU: reproducible builds of v1, v2, v3 from one spec; v1 boots and enrolls with
//! an in-process `halyard-server`; the v2 rollout (server-side delta) is cut by a power loss while
//! the slot is written, the device boots v1 again and retries, then commits v2 on slot B; v3 fails its
//! health check, the device falls back to v2 and reports `RolledBack` with the reason.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use halyard_os::image::{self, BuildOptions, BuildSummary};
use halyard_os::qemu::Vm;
use support::fleet::{self, Fleet, active, slot_version, state};
use support::{SpecArgs, spec};

const HEALTHY: &str = "";
const UNHEALTHY: &str = "[[health.checks]]\nkind = \"tcp\"\naddr = \"127.0.0.1:9\"\ntimeout_secs = 2\n";

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
    .unwrap()
}

fn static_bins() -> (std::path::PathBuf, std::path::PathBuf) {
    static BINS: std::sync::OnceLock<(std::path::PathBuf, std::path::PathBuf)> = std::sync::OnceLock::new();
    BINS.get_or_init(support::static_binaries).clone()
}

struct Boots {
    times: Vec<(String, Duration)>,
}

impl Boots {
    /// Boot and wait for the init to have switched root; records the boot time.
    fn start(&mut self, label: &str, dir: &Path, fleet: &Fleet, slot: &str) -> Vm {
        let mut vm = fleet::boot(
            &dir.join("v1a"),
            &dir.join("disk.img"),
            fleet,
            &dir.join("console.log"),
        );
        let up = vm
            .wait_for(&format!("halyard-init: slot {slot} up"), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{label}: {e}\n{}", fleet::tail(&vm)));
        eprintln!("boot {label}: slot {slot} up after {:.2} s", up.as_secs_f64());
        self.times.push((label.to_owned(), up));
        vm
    }
}

fn wait_reboot(vm: &mut Vm, what: &str) {
    let status = vm.wait_exit(Duration::from_secs(180)).unwrap();
    assert!(
        status.is_some(),
        "{what}: the guest did not reboot\n{}",
        fleet::tail(vm)
    );
}

#[test]
#[ignore = "being brought up: run with --run-ignored"]
fn boots_updates_survives_a_power_cut_and_rolls_back() {
    let started = Instant::now();
    static_bins();
    let built = started.elapsed();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root_json = support::keys(dir);
    let fleet = Fleet::start(&dir.join("server"));
    fleet.send("PUT", "/api/v1/trust-root", &root_json, "application/json");
    let token = fleet.server.started.enroll_token.clone();

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
    let mut boots = Boots { times: Vec::new() };

    // 1. v1 boots from A, enrolls and reports.
    let mut vm = boots.start("1 (v1)", dir, &fleet, "A");
    fleet.wait("v1 reported", Duration::from_secs(60), &vm, |r| {
        slot_version(r, "a") == "1.0.0" && active(r) == "a" && state(r).contains("idle")
    });

    // 2. v2 rolls out; the power goes while the agent writes slot B.
    fleet.rollout("to-v2", "2.0.0");
    fleet.wait("v2 installing", Duration::from_secs(120), &vm, |r| {
        state(r).contains("installing")
    });
    vm.kill();
    eprintln!("power cut while installing v2");

    // 3. It boots v1 again (B was marked unbootable before the write) and retries the update.
    let mut vm = boots.start("2 (after the cut)", dir, &fleet, "A");
    wait_reboot(&mut vm, "retried v2 install");

    // 4. v2 boots from B, passes health, commits.
    let vm = boots.start("3 (v2 trial)", dir, &fleet, "B");
    let d = fleet.wait("v2 committed", Duration::from_secs(90), &vm, |r| {
        state(r).contains("committed") && active(r) == "b" && slot_version(r, "b") == "2.0.0"
    });
    eprintln!("after v2: {}", d["device"]["report"]);

    // 5. v3 (failing health) is written to A, tried, given up; the device falls back to v2 on B.
    fleet.rollout("to-v3", "3.0.0");
    let mut vm = vm;
    wait_reboot(&mut vm, "v3 install");
    let mut vm = boots.start("4 (v3 trial)", dir, &fleet, "A");
    wait_reboot(&mut vm, "v3 health failure");
    let vm = boots.start("5 (back on v2)", dir, &fleet, "B");
    let d = fleet.wait("v3 rolled back", Duration::from_secs(90), &vm, |r| {
        state(r).contains("rolledback") && active(r) == "b" && slot_version(r, "b") == "2.0.0"
    });
    let report = &d["device"]["report"];
    eprintln!("after v3: {report}");
    assert!(state(report).contains("3.0.0"), "{report}");
    drop(vm);

    for (label, t) in &boots.times {
        eprintln!("boot {label}: {:.2} s to the switched root", t.as_secs_f64());
    }
    eprintln!(
        "static build {:.1} s, whole test {:.1} s",
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
