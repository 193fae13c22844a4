//! Building the agent from [`Settings`]: the Linux hardware backends chosen once at start-up, the
//! driver's settings (trust root read and checked), the server key, the enrollment (stored, or made
//! with the configured token) and the broker it may name.

use halyard_hardware::block::BlockDevice;
use halyard_hardware::block::file::FileDevice;
use halyard_hardware::boot::file::FileEnv;
use halyard_hardware::boot::grubenv::GrubEnv;
use halyard_hardware::boot::ubootenv::UBootEnv;
use halyard_hardware::boot::{BootControl, CurrentSlotSource, EnvBootControl};
use halyard_hardware::power::{LinuxPower, RebootMethod};
use halyard_hardware::watchdog::{LinuxWatchdog, Watchdog};
use halyard_hardware::{BlockError, DeviceError};
use halyard_ota::limits::Limits;
use halyard_ota::root::TrustedRoot;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::AppError;
use crate::config::{BootBackend, ConfigError, CurrentSlot, MqttSettings, Reboot, Settings, parse_broker};
use crate::driver::{self, Hardware};
use crate::enroll::{self, Enrollment};
use crate::faults::NoCrash;
use crate::identity::Identity;
use crate::transport::api::ServerApi;
use crate::transport::codec::backoff;

/// The real device as the config describes it.
pub fn linux_hardware(settings: &Settings) -> Result<Hardware, AppError> {
    let b = &settings.boot;
    let current = match &b.current {
        CurrentSlot::Cmdline(path) => CurrentSlotSource::KernelCmdline(path.clone()),
        CurrentSlot::Env => CurrentSlotSource::Env,
    };
    let boot: Box<dyn BootControl> = match b.backend {
        BootBackend::Grub => Box::new(EnvBootControl::new(GrubEnv::open_file(&b.env)?, current)),
        BootBackend::UBoot => Box::new(EnvBootControl::new(
            UBootEnv::open_fw_env_config(&b.env)?,
            current,
        )),
        BootBackend::File => Box::new(EnvBootControl::new(FileEnv::new(&b.env), current)),
    };
    let slot = |path: &std::path::Path| -> Result<Box<dyn BlockDevice>, BlockError> {
        Ok(Box::new(FileDevice::open_block_device(path)?))
    };
    let method = match &b.reboot {
        Reboot::Syscall => RebootMethod::Syscall,
        Reboot::Command(program) => RebootMethod::Command(program.clone()),
    };
    let watchdog: Box<dyn Watchdog> = match &b.watchdog {
        Some(path) => Box::new(LinuxWatchdog::open(path)?),
        None => Box::new(NoWatchdog),
    };
    Ok(Hardware {
        boot,
        slots: [slot(&settings.slots[0])?, slot(&settings.slots[1])?],
        power: Box::new(LinuxPower::new(method)),
        watchdog,
        files: crate::files::DiskFiles::shared(),
    })
}

/// A device without a hardware watchdog: nothing to pet.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWatchdog;

impl Watchdog for NoWatchdog {
    fn keepalive(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn set_timeout(&mut self, timeout: std::time::Duration) -> Result<std::time::Duration, DeviceError> {
        Ok(timeout)
    }
    fn timeout(&mut self) -> Result<std::time::Duration, DeviceError> {
        Ok(std::time::Duration::ZERO)
    }
    fn disarm(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// The driver's settings: the config plus the trust root, checked against `now` (Unix seconds).
pub fn driver_settings(settings: &Settings, now: u64) -> Result<driver::Settings, AppError> {
    let limits = Limits::default();
    let bytes = std::fs::read(&settings.trust_root).map_err(|e| AppError::Trust {
        path: settings.trust_root.clone(),
        reason: e.to_string(),
    })?;
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(now).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let root = TrustedRoot::from_bytes(&bytes, at, &limits).map_err(|e| AppError::Trust {
        path: settings.trust_root.clone(),
        reason: e.to_string(),
    })?;
    Ok(driver::Settings {
        data_dir: settings.data_dir.clone(),
        product: settings.product.clone(),
        hardware_class: settings.hardware_class.clone(),
        root,
        limits,
        policy: settings.policy,
        health: settings.health.clone(),
        chunk: settings.chunk,
        fetch_attempts: settings.fetch_attempts,
        factory: settings.factory.clone(),
    })
}

/// The server's Ed25519 public key from its SPKI PEM file.
pub fn server_key(path: &std::path::Path) -> Result<ed25519_dalek::VerifyingKey, AppError> {
    let fail = |reason: String| AppError::Trust {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let key = halyard_ota::keys::PublicKey::from_pem(&pem).map_err(|e| fail(e.to_string()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&key.to_raw()).map_err(|e| fail(e.to_string()))
}

/// The enrollment record: the stored one, or a new one when a token is configured (retried with
/// backoff while the server cannot be reached); `Some(None)` for a pre-provisioned device (no token,
/// no record); `None` when `stop` was set while waiting to retry.
pub fn enrollment(
    settings: &Settings,
    identity: &Identity,
    api: &ServerApi,
    stop: &AtomicBool,
) -> Result<Option<Option<Enrollment>>, AppError> {
    if let Some(record) = enroll::load(&settings.data_dir)? {
        return Ok(Some(Some(record)));
    }
    let e = &settings.enroll;
    let Some(token) = enroll::token(e.token.as_deref(), e.token_file.as_deref())? else {
        return Ok(Some(None));
    };
    let facts = enroll::Facts {
        product: settings.product.to_string(),
        hardware_class: settings.hardware_class.clone(),
    };
    let mut failures = 0;
    loop {
        let attempt = enroll::enroll(
            api,
            &settings.server_url,
            identity,
            &token,
            &facts,
            &settings.data_dir,
            &NoCrash,
        );
        match attempt {
            Ok(record) => return Ok(Some(Some(record))),
            Err(err) if err.is_transient() => {
                let m = &settings.mqtt;
                let delay = backoff(failures, m.reconnect_min, m.reconnect_max, 0);
                failures += 1;
                tracing::warn!(error = %err, ?delay, "enrollment failed, retrying");
                if sleep_unless(stop, delay) {
                    return Ok(None);
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Sleep `total` in short steps; `true` when `stop` was set meanwhile.
fn sleep_unless(stop: &AtomicBool, total: Duration) -> bool {
    let step = Duration::from_millis(100);
    let mut left = total;
    while !left.is_zero() {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        let now = left.min(step);
        std::thread::sleep(now);
        left -= now;
    }
    stop.load(Ordering::SeqCst)
}

/// HTTP settings after enrollment: a fleet CA the server handed out is pinned (it replaces the
/// config's `ca_file`, which served to reach the server for enrollment).
pub fn http_settings(settings: &Settings, enrollment: Option<&Enrollment>) -> crate::config::HttpSettings {
    let mut http = settings.http.clone();
    if let Some(ca) = enrollment.and_then(|e| e.ca_file(&settings.data_dir)) {
        http.ca_file = Some(ca);
    }
    http
}

/// The broker to connect to: the config's, or with `broker = "auto"` the enrollment's; with the
/// enrollment's credentials, and its pinned CA for `mqtts://`.
pub fn mqtt_settings(settings: &Settings, enrollment: Option<&Enrollment>) -> Result<MqttSettings, AppError> {
    let mut mqtt = settings.mqtt.clone();
    mqtt.credentials = enrollment.and_then(Enrollment::credentials);
    let pinned = enrollment.and_then(|e| e.ca_file(&settings.data_dir));
    if !settings.enroll.broker_auto {
        if mqtt.tls_ca.is_some() && pinned.is_some() {
            mqtt.tls_ca = pinned;
        }
        return Ok(mqtt);
    }
    let Some(enrollment) = enrollment else {
        return Err(ConfigError::Invalid {
            key: "server.broker",
            reason: "\"auto\" needs an enrollment ([enroll] token or a stored enrollment.json)".into(),
        }
        .into());
    };
    let ca = pinned.or_else(|| settings.http.ca_file.clone());
    let broker = parse_broker(&enrollment.answer.broker, ca.as_deref())?;
    (mqtt.host, mqtt.port, mqtt.tls_ca) = (broker.host, broker.port, broker.tls_ca);
    Ok(mqtt)
}
