//! Storage behind one trait. The SQLite backend ([`sqlite::SqliteStore`]) is the embedded default; a
//! PostgreSQL backend implements the same trait and passes the same conformance suite
//! (`tests/store_conformance.rs`). The trait is synchronous: the server calls it from
//! `spawn_blocking`, which suits rusqlite and the blocking `postgres` client alike.
//!
//! Every method is one transaction. Operations that must be atomic for crash safety are single methods:
//! [`Store::enroll`] (consume token + create device), [`Store::commit_step`] (rollout state + decisions
//! + desired envelopes + quarantines), [`Store::ingest`] (device state or event + its sequence number).
//!
//! Several server replicas may share one PostgreSQL database. The rollout engine then runs on the
//! holder of the engine lease ([`Store::engine_lease`], see `crate::leader`), and every step carries a
//! [`Fence`] the store checks inside the step's transaction, so a deposed leader cannot commit.

pub mod migrations;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use halyard_protocol::{DeviceId, Kind};

use crate::model::{
    ApiToken, AuditEntry, Decision, Delta, DesiredRecord, Device, DeviceEvent, EnrollToken, NewDevice,
    Quarantine, Release, Rollout, Site,
};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Backend(String),
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("{what} {key:?} already exists")]
    Conflict { what: &'static str, key: String },
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    #[error("schema version {found} is newer than this server understands ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    /// A fenced write lost: the engine lease moved on, or the rollout changed since it was read.
    #[error("{what} of {key:?} changed since this step was computed; step not applied")]
    Fenced { what: &'static str, key: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How far below a device's highest event sequence number a late event is still accepted (if its
/// seq is not stored yet). Older ones are refused, so a replay cannot outlive the window however long
/// events are kept; device sequence numbers are shared by all kinds, so this counts every message
/// the device signed since, not only events.
pub const EVENT_WINDOW: u64 = 1024;

/// Whether a late event `seq` is outside the [`EVENT_WINDOW`] below the device's `highest` event seq.
pub(crate) fn event_too_old(seq: i64, highest: i64) -> bool {
    seq.saturating_add(EVENT_WINDOW as i64) <= highest
}

/// Why an enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollOutcome {
    /// Enrolled now (or the same key enrolled again with the same token: idempotent).
    Enrolled(Box<Device>),
    /// Unknown, expired or already used token.
    BadToken,
    /// The key is enrolled already with different data.
    KeyConflict,
}

/// One verified message from a device, as the ingest path stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingest {
    Report(Box<halyard_protocol::Report>),
    Event(DeviceEvent),
    Presence { online: bool },
}

/// One message of an ingest batch.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestItem {
    pub device: DeviceId,
    pub kind: Kind,
    pub seq: u64,
    pub msg: Ingest,
}

/// Everything one rollout engine step changes, stored atomically.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepCommit {
    pub status: String,
    pub state: serde_json::Value,
    pub decisions: Vec<Decision>,
    pub desired: Vec<DesiredRecord>,
    pub quarantines: Vec<Quarantine>,
    pub fence: Fence,
}

/// Preconditions a shared-database backend checks inside the step's transaction. The single-process
/// SQLite backend needs neither (one writer, engine steps serialized by the engine lock).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fence {
    /// The engine lease epoch this step was computed under (a fencing token): refused once another
    /// replica took the lease. `None` for operator commands, which any replica may apply.
    pub epoch: Option<u64>,
    /// The revision of the rollout row the step was computed from ([`Store::rollout_revs`]): refused
    /// if another writer changed the row since (every write bumps it).
    pub prior_rev: Option<i64>,
}

/// A position in the devices' change feed ([`Store::devices_changed`]); only the backend that issued
/// it knows what the number means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeMark(pub i64);

/// A rollout's id, status and revision ([`Store::rollout_revs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRev {
    pub id: String,
    pub status: String,
    pub rev: i64,
}

/// The server's storage.
pub trait Store: Send + Sync + std::fmt::Debug {
    // operator tokens
    fn put_api_token(&self, token_hash: &str, token: &ApiToken) -> StoreResult<()>;
    fn api_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>>;
    fn api_tokens(&self) -> StoreResult<Vec<ApiToken>>;
    fn revoke_api_token(&self, id: &str) -> StoreResult<bool>;

    // enrollment
    fn put_enroll_token(&self, token_hash: &str, token: &EnrollToken) -> StoreResult<()>;
    /// Several tokens at once, all or none (a batch of tokens for a production line).
    fn put_enroll_tokens(&self, tokens: &[(String, EnrollToken)]) -> StoreResult<()>;
    fn enroll_tokens(&self) -> StoreResult<Vec<EnrollToken>>;
    /// Consumes the token and creates the device in one transaction.
    fn enroll(&self, token_hash: &str, device: &NewDevice, now: i64) -> StoreResult<EnrollOutcome>;
    /// [`Store::enroll`] for many devices (token hash, device), in order, in as few transactions as
    /// the store likes; each gets the outcome it would get alone after the ones before it.
    fn enroll_many(&self, batch: &[(String, NewDevice)], now: i64) -> StoreResult<Vec<EnrollOutcome>> {
        batch.iter().map(|(hash, d)| self.enroll(hash, d, now)).collect()
    }

    // devices
    fn device(&self, id: &DeviceId) -> StoreResult<Option<Device>>;
    fn devices(&self) -> StoreResult<Vec<Device>>;
    /// The devices written since `since` (a mark an earlier call returned; `None`: every device), and
    /// the mark to pass next time. It may repeat a device that did not change, never miss one that did:
    /// the engine keeps its fleet view current with this instead of reading every row each pass.
    fn devices_changed(&self, since: Option<ChangeMark>) -> StoreResult<(Vec<Device>, ChangeMark)>;
    /// (enrolled, online) without reading every device; backends should answer it from an aggregate.
    fn device_counts(&self) -> StoreResult<(u64, u64)> {
        let all = self.devices()?;
        Ok((all.len() as u64, all.iter().filter(|d| d.online).count() as u64))
    }
    fn set_device_labels(&self, id: &DeviceId, site: Option<&str>, tags: &[String]) -> StoreResult<()>;
    /// Stores a verified message and its sequence number; returns false for a replay (nothing is
    /// changed). `report` and `presence` are newest-wins: refused unless `seq` is above the last stored
    /// one for (device, kind). `event`s are history, kept by (device, seq): refused when that seq is
    /// stored already or is [`EVENT_WINDOW`] or more below the highest event seq, so events that
    /// arrive out of order (a round-robin shared subscription) are all kept.
    fn ingest(&self, id: &DeviceId, kind: Kind, seq: u64, msg: &Ingest, now: i64) -> StoreResult<bool>;
    /// [`Store::ingest`] for many messages in one transaction (the MQTT path batches under load); one
    /// result per message, `Err` only when the whole batch failed.
    fn ingest_batch(&self, batch: &[IngestItem], now: i64) -> StoreResult<Vec<Result<bool, StoreError>>>;
    /// Several batches in order, each with the time it arrived, in as few transactions as the store
    /// likes; the outcomes are those [`Store::ingest_batch`] gives each batch in turn.
    fn ingest_batches(
        &self,
        batches: &[(Vec<IngestItem>, i64)],
    ) -> StoreResult<Vec<Vec<Result<bool, StoreError>>>> {
        batches
            .iter()
            .map(|(b, now)| self.ingest_batch(b, *now))
            .collect()
    }
    /// The highest accepted sequence numbers per (device, kind).
    fn sequences(&self) -> StoreResult<Vec<(DeviceId, Kind, u64)>>;
    /// The device's newest `limit` events (by seq), oldest first.
    fn device_events(&self, id: &DeviceId, limit: u32) -> StoreResult<Vec<DeviceEvent>>;

    // sites
    fn put_site(&self, site: &Site) -> StoreResult<()>;
    fn sites(&self) -> StoreResult<Vec<Site>>;
    fn delete_site(&self, name: &str) -> StoreResult<bool>;

    // releases, quarantine, deltas
    fn put_release(&self, release: &Release) -> StoreResult<()>;
    fn releases(&self) -> StoreResult<Vec<Release>>;
    fn release(&self, version: &str) -> StoreResult<Option<Release>>;
    fn put_quarantine(&self, q: &Quarantine) -> StoreResult<()>;
    fn lift_quarantine(&self, version: &str, hardware_class: &str) -> StoreResult<bool>;
    fn quarantines(&self) -> StoreResult<Vec<Quarantine>>;
    fn put_delta(&self, delta: &Delta) -> StoreResult<()>;
    fn deltas(&self, version: &str) -> StoreResult<Vec<Delta>>;

    // rollouts
    fn put_rollout(&self, rollout: &Rollout) -> StoreResult<()>;
    fn rollout(&self, id: &str) -> StoreResult<Option<Rollout>>;
    /// A rollout and its revision (see [`Store::rollout_revs`]), read together.
    fn rollout_with_rev(&self, id: &str) -> StoreResult<Option<(Rollout, i64)>>;
    fn rollouts(&self) -> StoreResult<Vec<Rollout>>;
    /// Every rollout's id, status and revision (bumped by every write of its row), in the order of
    /// [`Store::rollouts`], without reading their states.
    fn rollout_revs(&self) -> StoreResult<Vec<RolloutRev>>;
    /// Applies one engine step atomically: state, decisions, desired envelopes, quarantines.
    /// Returns the rollout row's new revision (see [`Store::rollout_revs`]), so the engine can keep
    /// the state it wrote instead of reading it back.
    fn commit_step(&self, rollout: &str, step: &StepCommit, now: i64) -> StoreResult<i64>;
    fn decisions(&self, rollout: &str) -> StoreResult<Vec<Decision>>;

    // desired state per device
    fn desired(&self, id: &DeviceId) -> StoreResult<Option<DesiredRecord>>;
    fn all_desired(&self) -> StoreResult<Vec<DesiredRecord>>;
    /// The last desired sequence number of every device that has one.
    fn desired_seqs(&self) -> StoreResult<Vec<(DeviceId, u64)>>;
    /// Highest desired sequence number issued to the device (0 if none).
    fn desired_seq(&self, id: &DeviceId) -> StoreResult<u64>;
    fn put_desired(&self, record: &DesiredRecord) -> StoreResult<()>;

    // broker credentials (Mosquitto `$7$` hashes; the password itself lives only on the device)
    /// Sets (or replaces) the device's MQTT password hash.
    fn put_broker_credential(&self, id: &DeviceId, hash: &str, now: i64) -> StoreResult<()>;
    /// One device's hash (the embedded broker's login check).
    fn broker_credential(&self, id: &DeviceId) -> StoreResult<Option<String>>;
    /// Every (device, hash), ordered by device (the Mosquitto `password_file`).
    fn broker_credentials(&self) -> StoreResult<Vec<(DeviceId, String)>>;

    // audit
    fn audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>>;

    // key-value settings of the server itself (schema-free small values)
    fn meta(&self, key: &str) -> StoreResult<Option<String>>;
    fn put_meta(&self, key: &str, value: &str) -> StoreResult<()>;

    // leadership of the rollout engine among replicas
    /// Takes or renews the engine lease for `holder` for `ttl_ms`; `Some(epoch)` while `holder` leads.
    /// A single-process backend is always the leader (epoch 1).
    fn engine_lease(&self, holder: &str, ttl_ms: i64) -> StoreResult<Option<u64>> {
        let _ = (holder, ttl_ms);
        Ok(Some(1))
    }
    /// Gives the lease up (graceful shutdown) so another replica takes over without waiting.
    fn release_engine_lease(&self, holder: &str) -> StoreResult<()> {
        let _ = holder;
        Ok(())
    }
}
