//! The server's records: what the [`crate::store::Store`] keeps and the API returns. Rollout specs and
//! states are the engine's own serde types, kept as JSON so storage never depends on the engine.

use serde::{Deserialize, Serialize};

use halyard_protocol::{DeviceId, Report};

/// What a bearer token may do. Ordered: a higher role can do everything a lower one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// An operator API token (only its SHA-256 is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: i64,
}

/// A one-time enrollment token (only its SHA-256 is stored) and what it grants the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollToken {
    pub id: String,
    pub site: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub used_by: Option<DeviceId>,
}

/// A device as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    /// Raw Ed25519 public key, hex.
    pub public_key: String,
    pub product: String,
    pub hardware_class: String,
    pub site: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub enrolled_at: i64,
    /// Last time any verified message arrived.
    pub last_seen: i64,
    pub online: bool,
    /// The last verified report.
    pub report: Option<Report>,
}

/// A new enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub id: DeviceId,
    pub public_key: String,
    pub product: String,
    pub hardware_class: String,
}

/// A verified device event as history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEvent {
    pub device: DeviceId,
    pub seq: u64,
    pub at: i64,
    pub rollout: Option<String>,
    pub from: String,
    pub to: String,
    pub reason: Option<String>,
}

/// An uploaded, verified release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub version: String,
    pub product: String,
    pub security_version: u64,
    pub bundle_sha256: String,
    pub bundle_size: u64,
    /// The full image the release installs.
    pub image_sha256: String,
    pub image_size: u64,
    pub created_at: i64,
}

/// A release barred from a hardware class after it caused a revert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub version: String,
    pub hardware_class: String,
    pub reason: String,
    pub at: i64,
}

/// A server-side delta: turns `source_sha256` (an image devices run) into `version`'s image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub source_sha256: String,
    pub version: String,
    pub artifact_sha256: String,
    pub size: u64,
}

/// A rollout: the engine's spec and state as JSON, plus what the store indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub version: String,
    /// Device selector (`hw=...,site=...,tag=...`) naming the devices it targets.
    pub selector: String,
    /// Short status copied from the state, for listing.
    pub status: String,
    pub spec: serde_json::Value,
    pub state: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One recorded rollout decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub rollout: String,
    pub at: i64,
    pub kind: String,
    pub message: String,
}

/// The last signed `desired` envelope for a device (what MQTT retains and HTTP polling returns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredRecord {
    pub device: DeviceId,
    pub seq: u64,
    pub rollout: Option<String>,
    /// The encoded envelope, exactly as published.
    pub envelope: String,
}

/// One audited operator action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// A site: its IANA time zone, maintenance windows in local time, and how many of its devices may
/// update at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub name: String,
    pub tz: String,
    #[serde(default)]
    pub windows: Vec<WindowSpec>,
    pub max_concurrent: Option<u32>,
}

/// A maintenance window in the site's local time: `start`/`end` as `HH:MM` (may wrap midnight),
/// `days` as `mon`..`sun` (empty = every day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    #[serde(default)]
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
}
