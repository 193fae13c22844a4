//! Turning the merged file into [`Settings`]: every string that selects behaviour becomes an enum here,
//! once, and every number is range-checked.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use halyard_protocol::Sha256;

use super::file::{self, File};
use super::{
    BootBackend, BootSettings, Broker, ConfigError, CurrentSlot, EnrollSettings, FallbackSettings,
    HttpSettings, MqttSettings, Reboot, Settings,
};
use crate::driver::HealthSettings;
use crate::fsm::{Image, Policy};
use crate::health::{Check, ServerProbe};

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
    let (mqtt, broker_auto) = mqtt(&f.server, &f.poll)?;
    let server_url = server_url(&f.server.url)?;
    let probes = Probes {
        broker: (!broker_auto).then(|| (mqtt.host.clone(), mqtt.port)),
        url: server_url.clone(),
        ca_file: ca_file(&f.server),
    };
    Ok(Settings {
        data_dir: f.data_dir,
        product,
        hardware_class: f.hardware_class,
        trust_root: f.trust_root,
        server_key: f.server_key,
        server_url,
        http: http(&f.server, &f.update)?,
        fallback: fallback(&f.poll)?,
        enroll: enroll(f.enroll, broker_auto),
        mqtt,
        boot: boot(f.boot)?,
        slots: [f.slots.a, f.slots.b],
        factory: factory(f.factory)?,
        policy: policy(&f.update)?,
        health: health(f.health, &probes)?,
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

/// `mqtt://host:port` or `mqtts://host:port` (TLS needs `ca_file`).
pub(super) fn broker(url: &str, ca_file: Option<&Path>) -> Result<Broker, ConfigError> {
    let (rest, tls) = match (url.strip_prefix("mqtt://"), url.strip_prefix("mqtts://")) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => {
            return Err(invalid(
                "server.broker",
                format!("{url:?} is not mqtt://host:port, mqtts://host:port or auto"),
            ));
        }
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| invalid("server.broker", "missing :port"))?;
    let port = port
        .parse()
        .map_err(|_| invalid("server.broker", format!("bad port {port:?}")))?;
    if host.is_empty() {
        return Err(invalid("server.broker", "missing host"));
    }
    let tls_ca = match (tls, ca_file) {
        (false, _) => None,
        (true, Some(ca)) => Some(ca.to_path_buf()),
        (true, None) => return Err(invalid("server.ca_file", "mqtts:// needs a CA file")),
    };
    Ok(Broker {
        host: host.to_owned(),
        port,
        tls_ca,
    })
}

fn mqtt(server: &file::Server, poll: &file::Poll) -> Result<(MqttSettings, bool), ConfigError> {
    let auto = server.broker == "auto";
    let parsed = match auto {
        // Filled in from the enrollment record at start.
        true => Broker {
            host: String::new(),
            port: 0,
            tls_ca: None,
        },
        false => broker(&server.broker, ca_file(server).as_deref())?,
    };
    let reconnect_min = secs("poll.reconnect_min_secs", poll.reconnect_min_secs)?;
    let reconnect_max = secs("poll.reconnect_max_secs", poll.reconnect_max_secs)?;
    if reconnect_max < reconnect_min {
        return Err(invalid("poll.reconnect_max_secs", "is below reconnect_min_secs"));
    }
    let settings = MqttSettings {
        host: parsed.host,
        port: parsed.port,
        tls_ca: parsed.tls_ca,
        credentials: None,
        keep_alive: secs("poll.keep_alive_secs", poll.keep_alive_secs)?,
        tick: secs("poll.tick_secs", poll.tick_secs)?,
        reconnect_min,
        reconnect_max,
    };
    Ok((settings, auto))
}

fn ca_file(server: &file::Server) -> Option<PathBuf> {
    (!server.ca_file.as_os_str().is_empty()).then(|| server.ca_file.clone())
}

fn fallback(poll: &file::Poll) -> Result<FallbackSettings, ConfigError> {
    Ok(FallbackSettings {
        after: secs("poll.http_fallback_secs", poll.http_fallback_secs)?,
        every: secs("poll.http_poll_secs", poll.http_poll_secs)?,
    })
}

fn enroll(e: file::Enroll, broker_auto: bool) -> EnrollSettings {
    EnrollSettings {
        token: (!e.token.is_empty()).then_some(e.token),
        token_file: (!e.token_file.as_os_str().is_empty()).then_some(e.token_file),
        broker_auto,
    }
}

fn http(server: &file::Server, update: &file::Update) -> Result<HttpSettings, ConfigError> {
    Ok(HttpSettings {
        ca_file: ca_file(server),
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

/// What the `server` health check can reach.
struct Probes {
    broker: Option<(String, u16)>,
    url: String,
    ca_file: Option<PathBuf>,
}

fn health(h: file::Health, probes: &Probes) -> Result<HealthSettings, ConfigError> {
    let checks = h
        .checks
        .into_iter()
        .map(|c| check(c, probes))
        .collect::<Result<_, _>>()?;
    Ok(HealthSettings {
        checks,
        stability_window: Duration::from_secs(h.stability_window_secs),
        interval: secs("health.interval_secs", h.interval_secs)?,
        startup_grace: Duration::from_secs(h.startup_grace_secs),
    })
}

fn addr(value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| invalid("health.checks.addr", format!("{value:?} is not host:port")))
}

fn check(c: file::Check, probes: &Probes) -> Result<Check, ConfigError> {
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
        file::Check::Server { via, timeout_secs } => Check::Server {
            probe: server_probe(&via, probes)?,
            timeout: timeout(timeout_secs)?,
        },
        file::Check::File { path } => Check::File { path },
    })
}

fn server_probe(via: &str, probes: &Probes) -> Result<ServerProbe, ConfigError> {
    match (via, &probes.broker) {
        ("broker", Some((host, port))) => Ok(ServerProbe::Broker {
            host: host.clone(),
            port: *port,
        }),
        ("broker", None) => Err(invalid(
            "health.checks.via",
            "\"broker\" needs a fixed server.broker (it is \"auto\"); use via = \"http\"",
        )),
        ("http", _) => Ok(ServerProbe::Http {
            url: probes.url.clone(),
            ca_file: probes.ca_file.clone(),
        }),
        (other, _) => Err(invalid(
            "health.checks.via",
            format!("{other:?} is not broker or http"),
        )),
    }
}
