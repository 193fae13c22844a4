//! Wire types shared by `halyard-agent` and `halyard-server`: types and pure codecs only, no I/O.
//!
//! - [`ids`]: validated newtypes that end up in topics and URLs ([`DeviceId`], [`Sha256`], [`Slot`]).
//! - [`topics`]: the MQTT topic tree under `halyard/v1/devices/{device_id}/`.
//! - [`envelope`]: the signed envelope every message travels in, and its verification rules.
//! - `batch` (feature `batch`): many envelopes verified at once, for a server's ingest.
//! - [`messages`]: the payloads: [`Desired`], [`Report`], [`Event`] (one, or [`Events`] of one settle),
//!   [`Presence`].
//!
//! The contract is written out in `docs/protocol.md`.

#[cfg(feature = "batch")]
pub mod batch;
pub mod envelope;
pub mod ids;
pub mod messages;
pub mod topics;

pub use envelope::{Checked, Envelope, EnvelopeError, Kind, Payload, SeqGuard, SeqVerdict};
pub use ids::{DeviceId, IdError, Sha256, Slot};
pub use messages::{
    AgentState, Artifact, DeltaOffer, Desired, DesiredAction, Event, Events, HealthSummary,
    MAX_EVENTS_PER_ENVELOPE, Presence, Report, SlotReport, Window,
};
pub use topics::Topic;

/// Version of the wire format carried in every envelope; bumped on incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
