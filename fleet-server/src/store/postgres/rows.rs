//! Row mapping: PostgreSQL rows to model records, with typed reads (never `Row::get`, which panics).

use halyard_protocol::{DeviceId, Kind};
use postgres::Row;
use postgres::types::FromSql;

use super::TxResult;
use crate::model::{
    ApiToken, AuditEntry, Decision, Delta, DesiredRecord, Device, DeviceEvent, EnrollToken, Quarantine,
    Release, Role, Rollout, Site,
};
use crate::store::{StoreError, StoreResult};

pub(super) fn col<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> TxResult<T> {
    Ok(r.try_get(i)?)
}

fn json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encoding: {e}")))
}

pub(super) fn i64_of(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} {v} out of range")))
}

pub(super) fn u64_of(v: i64) -> u64 {
    v.max(0) as u64
}

pub(super) fn kind_str(kind: Kind) -> &'static str {
    match kind {
        Kind::Desired => "desired",
        Kind::Report => "report",
        // The events of an `events` envelope are stored one by one, in the same sequence space.
        Kind::Event | Kind::Events => "event",
        Kind::Presence => "presence",
    }
}

fn kind_parse(value: &str) -> StoreResult<Kind> {
    Ok(match value {
        "desired" => Kind::Desired,
        "report" => Kind::Report,
        "event" => Kind::Event,
        "presence" => Kind::Presence,
        other => {
            return Err(StoreError::Corrupt {
                what: "sequence kind",
                reason: other.to_owned(),
            });
        }
    })
}

pub(super) fn device_id(value: String) -> StoreResult<DeviceId> {
    DeviceId::new(value).map_err(|e| StoreError::Corrupt {
        what: "device id",
        reason: e.to_string(),
    })
}

pub(super) fn api_token(r: &Row) -> TxResult<ApiToken> {
    let role: String = col(r, 2)?;
    Ok(ApiToken {
        id: col(r, 0)?,
        name: col(r, 1)?,
        role: Role::parse(&role).ok_or(StoreError::Corrupt {
            what: "token role",
            reason: role.clone(),
        })?,
        created_at: col(r, 3)?,
    })
}

pub(super) const ENROLL_COLS: &str = "id, site, tags, created_at, expires_at, used_by";

pub(super) fn enroll_token(r: &Row) -> TxResult<EnrollToken> {
    let tags: String = col(r, 2)?;
    Ok(EnrollToken {
        id: col(r, 0)?,
        site: col(r, 1)?,
        tags: json("token tags", &tags)?,
        created_at: col(r, 3)?,
        expires_at: col(r, 4)?,
        used_by: col::<Option<String>>(r, 5)?.map(device_id).transpose()?,
    })
}

pub(super) const DEVICE_COLS: &str =
    "id, public_key, product, hardware_class, site, tags, enrolled_at, last_seen, online, report";

pub(super) fn device(r: &Row) -> TxResult<Device> {
    let tags: String = col(r, 5)?;
    let report: Option<String> = col(r, 9)?;
    Ok(Device {
        id: device_id(col(r, 0)?)?,
        public_key: col(r, 1)?,
        product: col(r, 2)?,
        hardware_class: col(r, 3)?,
        site: col(r, 4)?,
        tags: json("device tags", &tags)?,
        enrolled_at: col(r, 6)?,
        last_seen: col(r, 7)?,
        online: col(r, 8)?,
        report: report.map(|t| json("device report", &t)).transpose()?,
    })
}

pub(super) fn sequence(r: &Row) -> TxResult<(DeviceId, Kind, u64)> {
    let kind: String = col(r, 1)?;
    Ok((device_id(col(r, 0)?)?, kind_parse(&kind)?, u64_of(col(r, 2)?)))
}

pub(super) fn event(r: &Row) -> TxResult<DeviceEvent> {
    Ok(DeviceEvent {
        device: device_id(col(r, 0)?)?,
        seq: u64_of(col(r, 1)?),
        at: col(r, 2)?,
        rollout: col(r, 3)?,
        from: col(r, 4)?,
        to: col(r, 5)?,
        reason: col(r, 6)?,
    })
}

pub(super) fn site(r: &Row) -> TxResult<Site> {
    let windows: String = col(r, 2)?;
    Ok(Site {
        name: col(r, 0)?,
        tz: col(r, 1)?,
        windows: json("site windows", &windows)?,
        max_concurrent: col::<Option<i64>>(r, 3)?.map(|m| m.clamp(0, i64::from(u32::MAX)) as u32),
    })
}

pub(super) const RELEASE_COLS: &str =
    "version, product, security_version, bundle_sha256, bundle_size, image_sha256, image_size, created_at";

pub(super) fn release(r: &Row) -> TxResult<Release> {
    Ok(Release {
        version: col(r, 0)?,
        product: col(r, 1)?,
        security_version: u64_of(col(r, 2)?),
        bundle_sha256: col(r, 3)?,
        bundle_size: u64_of(col(r, 4)?),
        image_sha256: col(r, 5)?,
        image_size: u64_of(col(r, 6)?),
        created_at: col(r, 7)?,
    })
}

pub(super) fn quarantine(r: &Row) -> TxResult<Quarantine> {
    Ok(Quarantine {
        version: col(r, 0)?,
        hardware_class: col(r, 1)?,
        reason: col(r, 2)?,
        at: col(r, 3)?,
    })
}

pub(super) fn delta(r: &Row) -> TxResult<Delta> {
    Ok(Delta {
        source_sha256: col(r, 0)?,
        version: col(r, 1)?,
        artifact_sha256: col(r, 2)?,
        size: u64_of(col(r, 3)?),
    })
}

pub(super) const ROLLOUT_COLS: &str = "id, version, selector, status, spec, state, created_at, updated_at";

pub(super) fn rollout(r: &Row) -> TxResult<Rollout> {
    let (spec, state): (String, String) = (col(r, 4)?, col(r, 5)?);
    Ok(Rollout {
        id: col(r, 0)?,
        version: col(r, 1)?,
        selector: col(r, 2)?,
        status: col(r, 3)?,
        spec: json("rollout spec", &spec)?,
        state: json("rollout state", &state)?,
        created_at: col(r, 6)?,
        updated_at: col(r, 7)?,
    })
}

pub(super) fn decision(r: &Row) -> TxResult<Decision> {
    Ok(Decision {
        rollout: col(r, 0)?,
        at: col(r, 1)?,
        kind: col(r, 2)?,
        message: col(r, 3)?,
    })
}

pub(super) fn desired(r: &Row) -> TxResult<DesiredRecord> {
    Ok(DesiredRecord {
        device: device_id(col(r, 0)?)?,
        seq: u64_of(col(r, 1)?),
        rollout: col(r, 2)?,
        envelope: col(r, 3)?,
    })
}

pub(super) fn audit(r: &Row) -> TxResult<AuditEntry> {
    Ok(AuditEntry {
        at: col(r, 0)?,
        actor: col(r, 1)?,
        action: col(r, 2)?,
        target: col(r, 3)?,
        detail: col(r, 4)?,
    })
}
