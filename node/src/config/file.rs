//! The config file as TOML spells it (every key required after layering: the shipped defaults hold
//! them all). [`super::Settings`] is what the rest of the agent sees.

use std::path::PathBuf;

use serde::Deserialize;

/// The merged file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub data_dir: PathBuf,
    pub product: String,
    pub hardware_class: String,
    pub trust_root: PathBuf,
    pub server_key: PathBuf,
    pub server: Server,
    pub enroll: Enroll,
    pub boot: Boot,
    pub slots: Slots,
    pub factory: Factory,
    pub update: Update,
    pub poll: Poll,
    pub health: Health,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Server {
    pub broker: String,
    pub url: String,
    pub ca_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Enroll {
    pub token: String,
    pub token_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Boot {
    pub backend: String,
    pub env: PathBuf,
    pub current: String,
    pub cmdline: PathBuf,
    pub reboot: String,
    pub watchdog: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Slots {
    pub a: PathBuf,
    pub b: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Factory {
    pub version: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Update {
    pub tries: u8,
    pub trial_timeout_secs: u64,
    pub max_arm_attempts: u8,
    pub max_trial_boots: u8,
    pub chunk_bytes: u64,
    pub fetch_attempts: u32,
    pub max_artifact_bytes: u64,
    pub connect_timeout_secs: u64,
    pub read_timeout_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Poll {
    pub tick_secs: u64,
    pub keep_alive_secs: u64,
    pub reconnect_min_secs: u64,
    pub reconnect_max_secs: u64,
    pub http_fallback_secs: u64,
    pub http_poll_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Health {
    pub stability_window_secs: u64,
    pub interval_secs: u64,
    #[serde(default)]
    pub startup_grace_secs: u64,
    pub checks: Vec<Check>,
}

/// One check as written in the file.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Check {
    Command {
        program: PathBuf,
        #[serde(default)]
        args: Vec<String>,
        timeout_secs: u64,
    },
    Tcp {
        addr: String,
        timeout_secs: u64,
    },
    Http {
        addr: String,
        #[serde(default)]
        host: Option<String>,
        path: String,
        #[serde(default = "ok_status")]
        expect: u16,
        timeout_secs: u64,
    },
    Systemd {
        unit: String,
        timeout_secs: u64,
    },
    Server {
        #[serde(default = "via_broker")]
        via: String,
        timeout_secs: u64,
    },
    File {
        path: PathBuf,
    },
}

fn via_broker() -> String {
    "broker".to_owned()
}

fn ok_status() -> u16 {
    200
}
