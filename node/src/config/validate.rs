//! Turning the merged file into [`Settings`]: every string that selects behaviour becomes an enum here,
//! once, and every number is range-checked.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use halyard_protocol::Sha256;

use super::file::{self, File};
use super::{
    BootBackend, BootSettings, ConfigError, CurrentSlot, HttpSettings, MqttSettings, Reboot, Settings,
};
use crate::driver::HealthSettings;
use crate::fsm::{Image, Policy};
use crate::health::Check;

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn secs(key: &'static str, value: u64) -> Result<Duration, ConfigError> {
    if value == 0 {
        return Err(invalid(key, "must be at least 1 second"));
    }
    Ok(Duration::from_secs(value))
}

/// Validate the merged file.
pub(super) fn validate(f: File) -> Result<Settings, ConfigError> {
    let product = f
        .product
        .parse()
        .map_err(|e| invalid("product", format!("{e}")))?;
    if f.hardware_class.is_empty() {
        return Err(invalid("hardware_class", "must not be empty"));
    }
    Ok(Settings {
        data_dir: f.data_dir,
        product,
        hardware_class: f.hardware_class,
        trust_root: f.trust_root,
        server_key: f.server_key,
        server_url: server_url(&f.server.url)?,
        mqtt: mqtt(&f.server.broker, &f.poll)?,
        http: http(&f.server, &f.update)?,
        boot: boot(f.boot)?,
        slots: [f.slots.a, f.slots.b],
        factory: factory(f.factory)?,
        policy: policy(&f.update)?,
        health: health(f.health)?,
        chunk: f.update.chunk_bytes.max(1),
        fetch_attempts: f.update.fetch_attempts.max(1),
    })
}

fn server_url(url: &str) -> Result<String, ConfigError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(invalid("server.url", format!("{url:?} is not an http(s) URL")));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn mqtt(broker: &str, poll: &file::Poll) -> Result<MqttSettings, ConfigError> {
    let rest = broker
        .strip_prefix("mqtt://")
        .ok_or_else(|| invalid("server.broker", format!("{broker:?} is not mqtt://host:port")))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| invalid("server.broker", "missing :port"))?;
    let port = port
        .parse()
        .map_err(|_| invalid("server.broker", format!("bad port {port:?}")))?;
    if host.is_empty() {
        return Err(invalid("server.broker", "missing host"));
    }
    let reconnect_min = secs("poll.reconnect_min_secs", poll.reconnect_min_secs)?;
    let reconnect_max = secs("poll.reconnect_max_secs", poll.reconnect_max_secs)?;
    if reconnect_max < reconnect_min {
        return Err(invalid("poll.reconnect_max_secs", "is below reconnect_min_secs"));
    }
    Ok(MqttSettings {
        host: host.to_owned(),
        port,
        keep_alive: secs("poll.keep_alive_secs", poll.keep_alive_secs)?,
        tick: secs("poll.tick_secs", poll.tick_secs)?,
        reconnect_min,
        reconnect_max,
    })
}

fn http(server: &file::Server, update: &file::Update) -> Result<HttpSettings, ConfigError> {
    Ok(HttpSettings {
        ca_file: (!server.ca_file.as_os_str().is_empty()).then(|| server.ca_file.clone()),
        max_artifact_bytes: update.max_artifact_bytes,
        connect_timeout: secs("update.connect_timeout_secs", update.connect_timeout_secs)?,
        read_timeout: secs("update.read_timeout_secs", update.read_timeout_secs)?,
    })
}

fn boot(b: file::Boot) -> Result<BootSettings, ConfigError> {
    let backend = match b.backend.as_str() {
        "grub" => BootBackend::Grub,
        "uboot" => BootBackend::UBoot,
        "file" => BootBackend::File,
        other => {
            return Err(invalid(
                "boot.backend",
                format!("{other:?} is not grub, uboot or file"),
            ));
        }
    };
    let current = match b.current.as_str() {
        "cmdline" => CurrentSlot::Cmdline(b.cmdline),
        "env" => CurrentSlot::Env,
        other => {
            return Err(invalid(
                "boot.current",
                format!("{other:?} is not cmdline or env"),
            ));
        }
    };
    let reboot = match b.reboot.as_str() {
        "syscall" => Reboot::Syscall,
        "" => return Err(invalid("boot.reboot", "must be \"syscall\" or a program path")),
        program => Reboot::Command(PathBuf::from(program)),
    };
    Ok(BootSettings {
        backend,
        env: b.env,
        current,
        reboot,
        watchdog: (!b.watchdog.as_os_str().is_empty()).then_some(b.watchdog),
    })
}

fn factory(f: file::Factory) -> Result<Image, ConfigError> {
    let sha256 = Sha256::parse(&f.sha256).map_err(|e| invalid("factory.sha256", e.to_string()))?;
    Ok(Image {
        version: f.version,
        size: f.size,
        sha256,
    })
}

fn policy(u: &file::Update) -> Result<Policy, ConfigError> {
    if !(1..=9).contains(&u.tries) {
        return Err(invalid("update.tries", "must be 1..=9"));
    }
    if u.max_arm_attempts == 0 || u.max_trial_boots == 0 {
        return Err(invalid("update.max_arm_attempts", "budgets must be at least 1"));
    }
    Ok(Policy {
        boot_tries: u.tries,
        trial_timeout: secs("update.trial_timeout_secs", u.trial_timeout_secs)?.as_secs(),
        max_arm_attempts: u.max_arm_attempts,
        max_trial_boots: u.max_trial_boots,
    })
}

fn health(h: file::Health) -> Result<HealthSettings, ConfigError> {
    let checks = h.checks.into_iter().map(check).collect::<Result<_, _>>()?;
    Ok(HealthSettings {
        checks,
        stability_window: Duration::from_secs(h.stability_window_secs),
        interval: secs("health.interval_secs", h.interval_secs)?,
    })
}

fn addr(value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| invalid("health.checks.addr", format!("{value:?} is not host:port")))
}

fn check(c: file::Check) -> Result<Check, ConfigError> {
    let timeout = |s| secs("health.checks.timeout_secs", s);
    Ok(match c {
        file::Check::Command {
            program,
            args,
            timeout_secs,
        } => Check::Command {
            program,
            args,
            timeout: timeout(timeout_secs)?,
        },
        file::Check::Tcp {
            addr: a,
            timeout_secs,
        } => Check::Tcp {
            addr: addr(&a)?,
            timeout: timeout(timeout_secs)?,
        },
        file::Check::Http {
            addr: a,
            host,
            path,
            expect,
            timeout_secs,
        } => Check::Http {
            addr: addr(&a)?,
            host: host.unwrap_or_else(|| a.clone()),
            path,
            expect,
            timeout: timeout(timeout_secs)?,
        },
        file::Check::Systemd { unit, timeout_secs } => Check::SystemdUnit {
            unit,
            timeout: timeout(timeout_secs)?,
        },
    })
}
