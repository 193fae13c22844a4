//! Message payloads. Times are Unix seconds (UTC) so this crate needs no time library; versions are the
//! release's semver string exactly as in its bundle manifest.

use serde::{Deserialize, Serialize};

use crate::envelope::{Kind, Payload};
use crate::ids::{Sha256, Slot};

/// Server → device (retained on `desired`): what the device should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// The rollout this instruction belongs to, for reports and events.
    pub rollout: Option<String>,
    pub action: DesiredAction,
}

/// The instruction itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DesiredAction {
    /// Keep running what is committed; cancel anything not yet staged.
    Stay,
    /// Download and install a release.
    Install {
        version: String,
        /// The full bundle (always offered: the fallback when no delta applies).
        bundle: Artifact,
        /// Delta bundles, each usable only when the active slot's image hash equals its source.
        #[serde(default)]
        deltas: Vec<DeltaOffer>,
        /// When the device may reboot into the new release.
        window: Option<Window>,
        /// Unix seconds after which the device gives up and reports failure.
        deadline: Option<u64>,
    },
    /// Revert: boot the other slot, which already holds `version` (no download).
    Switch { version: String, image_sha256: Sha256 },
}

/// A downloadable file: where it is and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// HTTPS URL (the server's `/v1/artifacts/{sha256}` or any CDN/S3 URL); supports Range.
    pub url: String,
    pub sha256: Sha256,
    pub size: u64,
}

/// A delta bundle and the source image it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaOffer {
    pub source_sha256: Sha256,
    pub artifact: Artifact,
}

/// A time range in Unix seconds, already resolved from the site's local maintenance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub not_before: u64,
    pub not_after: u64,
}

/// The agent's state as reported on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    Idle,
    Downloading { version: String, done: u64, total: u64 },
    Installing { version: String },
    Staged { version: String },
    Rebooting { version: String },
    Trial { version: String },
    Committed { version: String },
    RolledBack { version: String, reason: String },
    Failed { version: Option<String>, reason: String },
}

/// One slot as the device sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotReport {
    pub version: Option<String>,
    pub image_sha256: Option<Sha256>,
    pub bootable: bool,
    pub successful: bool,
}

/// Outcome of the last health evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSummary {
    pub healthy: bool,
    /// Names of failing checks with a short reason each.
    #[serde(default)]
    pub failing: Vec<String>,
    pub checked_at: u64,
}

/// Device → server (retained on `report`): the device's whole state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub at: u64,
    pub agent_version: String,
    pub product: String,
    pub hardware_class: String,
    pub active: Slot,
    pub slot_a: SlotReport,
    pub slot_b: SlotReport,
    pub state: AgentState,
    pub last_error: Option<String>,
    pub health: Option<HealthSummary>,
}

/// Device → server (on `events`): one state transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: u64,
    pub rollout: Option<String>,
    pub from: AgentState,
    pub to: AgentState,
    pub reason: Option<String>,
}

/// Device → server (on `events`, kind `events`): the transitions of one settle, in order, in one
/// signed message. The events keep a sequence number each: for `n` events in an envelope with number
/// `seq`, event `i` has `seq - (n - 1) + i` (the agent takes `n` consecutive numbers and signs with the
/// last), so the server stores the same history as for `n` single events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Events {
    pub events: Vec<Event>,
}

/// The most events an agent puts in one envelope (a settle rarely makes more than five).
pub const MAX_EVENTS_PER_ENVELOPE: usize = 32;

impl Events {
    /// The events with their sequence numbers, given the envelope's; `None` when the envelope
    /// carries no event or its number is too small for that many (numbers start at 1).
    pub fn numbered(self, seq: u64) -> Option<Vec<(u64, Event)>> {
        let n = u64::try_from(self.events.len()).ok()?;
        let first = seq.checked_sub(n.checked_sub(1)?).filter(|f| *f >= 1)?;
        Some((first..=seq).zip(self.events).collect())
    }
}

/// Device → server (retained on `presence`; the offline form is the MQTT last will).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub online: bool,
    pub at: u64,
}

impl Payload for Desired {
    const KIND: Kind = Kind::Desired;
}
impl Payload for Report {
    const KIND: Kind = Kind::Report;
}
impl Payload for Event {
    const KIND: Kind = Kind::Event;
}
impl Payload for Events {
    const KIND: Kind = Kind::Events;
}
impl Payload for Presence {
    const KIND: Kind = Kind::Presence;
}
