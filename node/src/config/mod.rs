//! Layered TOML configuration (zincati style), validated into typed [`Settings`].
//!
//! Layers, later wins key by key (tables merge, other values replace): the shipped defaults
//! (`node/config/agent.toml`, compiled in and printed by `halyard-agent print-default-config`), the main
//! file (`/etc/halyard/agent.toml`, or `--config FILE`), then `*.toml` in the drop-in folder next to it
//! (`agent.d/`) in name order. Missing files are skipped; unknown keys are errors.

mod file;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use halyard_ota::manifest::Name;

use crate::driver::HealthSettings;
use crate::fsm::{Image, Policy};

use validate::validate;

/// The defaults shipped with the agent.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/agent.toml");

/// The main config file of an installed agent.
pub const SYSTEM_CONFIG: &str = "/etc/halyard/agent.toml";

/// Configuration could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or folder could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid TOML, or the merged result does not have the expected shape.
    #[error("parsing {origin}: {message}")]
    Parse {
        /// The file (or "merged configuration").
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("config key {key}: {reason}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// Which bootloader environment holds the boot flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootBackend {
    /// GRUB environment block (`grub-editenv`).
    Grub,
    /// U-Boot environment (`fw_setenv`), single or redundant copy.
    UBoot,
    /// A plain file (development, simulator).
    File,
}

/// How the agent learns which slot runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentSlot {
    /// `halyard.slot=` on this kernel command line file.
    Cmdline(PathBuf),
    /// `HALYARD_BOOTED` in the boot environment.
    Env,
}

/// How the agent reboots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reboot {
    /// `reboot(2)` (the agent is PID 1).
    Syscall,
    /// Run this program.
    Command(PathBuf),
}

/// Boot control and device settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSettings {
    /// Backend.
    pub backend: BootBackend,
    /// Its environment file or `fw_env.config`.
    pub env: PathBuf,
    /// Running-slot source.
    pub current: CurrentSlot,
    /// Reboot method.
    pub reboot: Reboot,
    /// `/dev/watchdog`, if any.
    pub watchdog: Option<PathBuf>,
}

/// HTTP download settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Extra CA certificates (PEM); `None` = built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Refuse artifacts larger than this.
    pub max_artifact_bytes: u64,
    /// TCP/TLS connect limit.
    pub connect_timeout: Duration,
    /// Limit between two reads of a response.
    pub read_timeout: Duration,
}

/// MQTT broker and loop timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// `mqtts://`: TLS trusting these CA certificates (PEM); `None` = plain TCP.
    pub tls_ca: Option<PathBuf>,
    /// Username and password sent in CONNECT (from the enrollment); `None` = anonymous.
    pub credentials: Option<MqttCredentials>,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// How often the agent runs timers when nothing arrives.
    pub tick: Duration,
    /// First reconnect delay (doubles, with jitter).
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
}

/// The device's broker account: username (its device id) and the password issued at enrollment.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttCredentials {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for MqttCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Enrollment with a one-time token (`[enroll]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnrollSettings {
    /// The token (empty in the file = none).
    pub token: Option<String>,
    /// A file holding the token (read at start; empty path = none).
    pub token_file: Option<PathBuf>,
    /// `server.broker = "auto"`: use the broker the enrollment answer named.
    pub broker_auto: bool,
}

/// The HTTP polling fallback used while the broker is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackSettings {
    /// Start polling once the broker has been unreachable this long.
    pub after: Duration,
    /// Time between two polls of `desired`.
    pub every: Duration,
}

/// A parsed `server.broker` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS (`mqtts://`), trusting this CA file.
    pub tls_ca: Option<PathBuf>,
}

/// Parse `mqtt://host:port` or `mqtts://host:port` (which needs `ca_file`).
pub fn parse_broker(url: &str, ca_file: Option<&Path>) -> Result<Broker, ConfigError> {
    validate::broker(url, ca_file)
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Journal, identity, download.
    pub data_dir: PathBuf,
    /// Product bundles must target.
    pub product: Name,
    /// Hardware class for reports.
    pub hardware_class: String,
    /// Release trust root file.
    pub trust_root: PathBuf,
    /// Server public key (SPKI PEM).
    pub server_key: PathBuf,
    /// Server base URL.
    pub server_url: String,
    /// Broker and loop timing.
    pub mqtt: MqttSettings,
    /// Downloads.
    pub http: HttpSettings,
    /// Boot control.
    pub boot: BootSettings,
    /// Slot A and B devices.
    pub slots: [PathBuf; 2],
    /// The shipped image.
    pub factory: Image,
    /// State machine tunables.
    pub policy: Policy,
    /// Trial health checks.
    pub health: HealthSettings,
    /// Token enrollment.
    pub enroll: EnrollSettings,
    /// HTTP polling while the broker is unreachable.
    pub fallback: FallbackSettings,
    /// Bytes per range request.
    pub chunk: u64,
    /// Attempts per chunk.
    pub fetch_attempts: u32,
}

/// Where the layers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The main file (skipped when missing).
    pub main: PathBuf,
    /// The drop-in folder (skipped when missing).
    pub dropins: PathBuf,
}

impl Sources {
    /// `/etc/halyard/agent.toml` and `/etc/halyard/agent.d/`.
    pub fn system() -> Self {
        Self::around(Path::new(SYSTEM_CONFIG))
    }

    /// `file` and the `agent.d/` folder beside it.
    pub fn around(file: &Path) -> Self {
        Self {
            main: file.to_path_buf(),
            dropins: file.with_file_name("agent.d"),
        }
    }

    /// The files to read after the defaults, in order.
    pub fn files(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let mut files = Vec::new();
        if self.main.is_file() {
            files.push(self.main.clone());
        }
        let read = |source| ConfigError::Read {
            path: self.dropins.clone(),
            source,
        };
        if self.dropins.is_dir() {
            let mut dropins = Vec::new();
            for entry in std::fs::read_dir(&self.dropins).map_err(read)? {
                let path = entry.map_err(read)?.path();
                if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
                    dropins.push(path);
                }
            }
            dropins.sort();
            files.extend(dropins);
        }
        Ok(files)
    }

    /// Read, merge and validate every layer.
    pub fn load(&self) -> Result<Settings, ConfigError> {
        let mut merged = parse_table(DEFAULT_CONFIG, "built-in defaults")?;
        for path in self.files()? {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            merge(&mut merged, parse_table(&text, &path.display().to_string())?);
        }
        tracing::debug!(main = %self.main.display(), "configuration merged");
        let file: file::File = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: "merged configuration".into(),
                message: e.to_string(),
            })?;
        validate(file)
    }
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        origin: origin.to_owned(),
        message: e.to_string(),
    })
}

/// Overlay `top` on `base`: tables merge recursively, everything else replaces.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => merge(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
