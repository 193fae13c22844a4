//! Layered configuration: shipped defaults, main file, drop-ins in name order, validation errors, and
//! the binary's `print-default-config`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use halyard_node::config::{BootBackend, ConfigError, CurrentSlot, DEFAULT_CONFIG, Reboot, Sources};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn shipped_defaults_validate() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Sources::around(&dir.path().join("missing.toml")).load().unwrap();
    assert_eq!(settings.product.as_str(), "halyard-generic");
    assert_eq!(settings.boot.backend, BootBackend::Grub);
    assert_eq!(
        settings.boot.current,
        CurrentSlot::Cmdline("/proc/cmdline".into())
    );
    assert_eq!(settings.boot.reboot, Reboot::Command("/sbin/reboot".into()));
    assert_eq!(settings.boot.watchdog, None);
    assert_eq!(
        (settings.mqtt.host.as_str(), settings.mqtt.port),
        ("127.0.0.1", 1883)
    );
    assert_eq!(settings.http.ca_file, None);
    assert_eq!(settings.policy.boot_tries, 3);
    assert!(settings.health.checks.is_empty());
}

#[test]
fn main_file_then_dropins_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("agent.toml");
    write(
        &main,
        "product = \"kiosk\"\n[update]\ntries = 4\n[boot]\nbackend = \"uboot\"\nwatchdog = \"/dev/watchdog0\"\n",
    );
    write(&dir.path().join("agent.d/20-late.toml"), "[update]\ntries = 7\n");
    write(
        &dir.path().join("agent.d/10-early.toml"),
        "[update]\ntries = 5\nchunk_bytes = 4096\n",
    );
    write(&dir.path().join("agent.d/ignored.txt"), "not = toml at all [");
    write(
        &dir.path().join("agent.d/30-health.toml"),
        "[[health.checks]]\nkind = \"tcp\"\naddr = \"127.0.0.1:22\"\ntimeout_secs = 2\n",
    );
    let sources = Sources::around(&main);
    let files: Vec<_> = sources
        .files()
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(
        files,
        ["agent.toml", "10-early.toml", "20-late.toml", "30-health.toml"]
    );
    let settings = sources.load().unwrap();
    assert_eq!(settings.product.as_str(), "kiosk");
    assert_eq!(settings.policy.boot_tries, 7, "the last drop-in wins");
    assert_eq!(settings.chunk, 4096, "an earlier drop-in's other keys stay");
    assert_eq!(settings.boot.backend, BootBackend::UBoot);
    assert_eq!(settings.boot.watchdog, Some("/dev/watchdog0".into()));
    assert_eq!(
        settings.boot.env,
        Path::new("/boot/efi/EFI/halyard/grubenv"),
        "untouched keys keep defaults"
    );
    assert_eq!(settings.health.checks.len(), 1);
    assert_eq!(settings.health.interval, Duration::from_secs(10));
}

fn load_with(text: &str) -> Result<halyard_node::config::Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("agent.toml");
    write(&main, text);
    Sources::around(&main).load()
}

#[test]
fn invalid_configs_name_the_key() {
    let cases = [
        ("unknown = 1\n", "unknown"),
        ("[boot]\nbackend = \"lilo\"\n", "boot.backend"),
        ("[update]\ntries = 0\n", "update.tries"),
        ("[server]\nbroker = \"tcp://x:1\"\n", "server.broker"),
        ("[server]\nurl = \"ftp://x\"\n", "server.url"),
        ("[poll]\ntick_secs = 0\n", "poll.tick_secs"),
        ("[factory]\nsha256 = \"abc\"\n", "factory.sha256"),
        ("product = \"no spaces allowed\"\n", "product"),
        ("[update\n", "agent.toml"),
    ];
    for (text, needle) in cases {
        let err = load_with(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text:?}: {err}");
    }
}

#[test]
fn binary_prints_the_shipped_defaults() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_halyard-agent"))
        .arg("print-default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), DEFAULT_CONFIG);
    assert_eq!(
        DEFAULT_CONFIG,
        std::fs::read_to_string("config/agent.toml").unwrap()
    );
}

#[test]
fn binary_status_reads_an_empty_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("agent.toml");
    write(
        &main,
        &format!("data_dir = {:?}\n", dir.path().join("data").display().to_string()),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_halyard-agent"))
        .args(["--config", main.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stdout).unwrap().contains("has not run yet"));
}

fn load(text: &str) -> Result<halyard_node::config::Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("agent.toml");
    write(&main, text);
    Sources::around(&main).load()
}

#[test]
fn broker_urls_enrollment_fallback_and_server_checks() {
    use halyard_node::health::{Check, ServerProbe};
    let s = load("[server]\nbroker = \"mqtts://broker.example:8883\"\nca_file = \"/etc/ca.pem\"\n").unwrap();
    assert_eq!((s.mqtt.host.as_str(), s.mqtt.port), ("broker.example", 8883));
    assert_eq!(s.mqtt.tls_ca.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert!(!s.enroll.broker_auto);
    assert_eq!(s.enroll.token, None);
    assert_eq!(s.fallback.after, Duration::from_secs(60));
    let err = load("[server]\nbroker = \"mqtts://broker.example:8883\"\n").unwrap_err();
    assert!(err.to_string().contains("CA file"), "{err}");

    let s = load(
        "[server]\nbroker = \"auto\"\nurl = \"https://fleet.example/\"\n[enroll]\ntoken_file = \"/run/token\"\n\
         [poll]\nhttp_fallback_secs = 5\nhttp_poll_secs = 7\n\
         [[health.checks]]\nkind = \"server\"\nvia = \"http\"\ntimeout_secs = 3\n",
    )
    .unwrap();
    assert!(s.enroll.broker_auto);
    assert_eq!(s.enroll.token_file.as_deref(), Some(Path::new("/run/token")));
    assert_eq!(
        (s.fallback.after, s.fallback.every),
        (Duration::from_secs(5), Duration::from_secs(7))
    );
    assert_eq!(
        s.health.checks,
        vec![Check::Server {
            probe: ServerProbe::Http {
                url: "https://fleet.example".into(),
                ca_file: None
            },
            timeout: Duration::from_secs(3)
        }]
    );
    let err = load("[server]\nbroker = \"auto\"\n[[health.checks]]\nkind = \"server\"\ntimeout_secs = 3\n")
        .unwrap_err();
    assert!(
        err.to_string().contains("via"),
        "a broker probe needs a fixed broker: {err}"
    );
    let s = load("[[health.checks]]\nkind = \"server\"\ntimeout_secs = 3\n").unwrap();
    assert!(
        matches!(
            &s.health.checks[0],
            Check::Server {
                probe: ServerProbe::Broker { port: 1883, .. },
                ..
            }
        ),
        "{:?}",
        s.health.checks
    );
    let err = load("[server]\nbroker = \"tcp://x:1\"\n").unwrap_err();
    assert!(err.to_string().contains("server.broker"), "{err}");
}
