//! Row mapping and queries for tokens, devices, ingest and sites.

use halyard_protocol::{DeviceId, Kind};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{db, json_err, to_json};
use crate::model::{ApiToken, Device, DeviceEvent, EnrollToken, NewDevice, Role, Site};
use crate::store::{EnrollOutcome, Ingest, IngestItem, StoreError, StoreResult};

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

pub(super) fn api_token_row(r: &Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

pub(super) fn api_token(
    (id, name, role, created_at): (String, String, String, i64),
) -> StoreResult<ApiToken> {
    let role = Role::parse(&role).ok_or(StoreError::Corrupt {
        what: "token role",
        reason: role.clone(),
    })?;
    Ok(ApiToken {
        id,
        name,
        role,
        created_at,
    })
}

type EnrollRow = (String, Option<String>, String, i64, Option<i64>, Option<String>);

pub(super) fn enroll_row(r: &Row<'_>) -> rusqlite::Result<EnrollRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
}

pub(super) fn enroll_token(
    (id, site, tags, created_at, expires_at, used_by): EnrollRow,
) -> StoreResult<EnrollToken> {
    Ok(EnrollToken {
        id,
        site,
        tags: serde_json::from_str(&tags).map_err(json_err("token tags"))?,
        created_at,
        expires_at,
        used_by: used_by.map(device_id).transpose()?,
    })
}

pub(super) const DEVICE_COLS: &str =
    "id, public_key, product, hardware_class, site, tags, enrolled_at, last_seen, online, report";

type DeviceRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
    bool,
    Option<String>,
);

pub(super) fn device_row(r: &Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

pub(super) fn device(row: DeviceRow) -> StoreResult<Device> {
    let (id, public_key, product, hardware_class, site, tags, enrolled_at, last_seen, online, report) = row;
    Ok(Device {
        id: device_id(id)?,
        public_key,
        product,
        hardware_class,
        site,
        tags: serde_json::from_str(&tags).map_err(json_err("device tags"))?,
        enrolled_at,
        last_seen,
        online,
        report: report
            .map(|r| serde_json::from_str(&r).map_err(json_err("device report")))
            .transpose()?,
    })
}

/// Consumes the token and creates (or re-confirms) the device, inside the caller's transaction.
pub(super) fn enroll(
    conn: &Connection,
    token_hash: &str,
    new: &NewDevice,
    now: i64,
) -> StoreResult<EnrollOutcome> {
    let token: Option<EnrollRow> = row(
        conn,
        "SELECT id, site, tags, created_at, expires_at, used_by FROM enroll_tokens WHERE hash = ?1",
        params![token_hash],
        enroll_row,
    )
    .optional()
    .map_err(db)?;
    let Some(token) = token.map(enroll_token).transpose()? else {
        return Ok(EnrollOutcome::BadToken);
    };
    if token.expires_at.is_some_and(|t| t <= now) {
        return Ok(EnrollOutcome::BadToken);
    }
    let existing = find_device(conn, &new.id)?;
    match (&token.used_by, existing) {
        (Some(user), Some(dev)) if user == &new.id => return Ok(same_or_conflict(dev, new)),
        (Some(_), _) => return Ok(EnrollOutcome::BadToken),
        (None, Some(_)) => return Ok(EnrollOutcome::KeyConflict),
        (None, None) => {}
    }
    let taken: bool = row(
        conn,
        "SELECT COUNT(*) > 0 FROM devices WHERE public_key = ?1",
        params![new.public_key],
        |r| r.get(0),
    )
    .map_err(db)?;
    if taken {
        return Ok(EnrollOutcome::KeyConflict);
    }
    cached(
        conn,
        "INSERT INTO devices (id, public_key, product, hardware_class, site, tags, enrolled_at, last_seen, online)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 0)",
        params![new.id.as_str(), new.public_key, new.product, new.hardware_class, token.site, to_json(&token.tags)?, now],
    )?;
    cached(
        conn,
        "UPDATE enroll_tokens SET used_by = ?1 WHERE hash = ?2",
        params![new.id.as_str(), token_hash],
    )?;
    find_device(conn, &new.id)?
        .map(|d| EnrollOutcome::Enrolled(Box::new(d)))
        .ok_or_else(|| StoreError::Backend("device vanished inside its own transaction".into()))
}

fn same_or_conflict(dev: Device, new: &NewDevice) -> EnrollOutcome {
    let same = dev.public_key == new.public_key
        && dev.product == new.product
        && dev.hardware_class == new.hardware_class;
    if same {
        EnrollOutcome::Enrolled(Box::new(dev))
    } else {
        EnrollOutcome::KeyConflict
    }
}

pub(super) fn find_device(conn: &Connection, id: &DeviceId) -> StoreResult<Option<Device>> {
    row(
        conn,
        &format!("SELECT {DEVICE_COLS} FROM devices WHERE id = ?1"),
        params![id.as_str()],
        device_row,
    )
    .optional()
    .map_err(db)?
    .map(device)
    .transpose()
}

/// Stores one verified message unless it is a replay (see [`crate::store::Store::ingest`]), inside
/// the caller's transaction.
pub(super) fn ingest(
    conn: &Connection,
    id: &DeviceId,
    kind: Kind,
    seq: u64,
    msg: &Ingest,
    now: i64,
) -> StoreResult<bool> {
    let seq = i64::try_from(seq).map_err(|_| StoreError::Backend(format!("sequence {seq} out of range")))?;
    let last: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sequences WHERE device = ?1 AND kind = ?2")
        .and_then(|mut q| q.query_row(params![id.as_str(), kind_str(kind)], |r| r.get(0)))
        .optional()
        .map_err(db)?;
    let fresh = match msg {
        Ingest::Event(ev) => insert_event(conn, id, seq, last, ev)?,
        _ => last.is_none_or(|l| seq > l),
    };
    if !fresh {
        return Ok(false);
    }
    cached(
        conn,
        "INSERT INTO sequences (device, kind, seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (device, kind) DO UPDATE SET seq = MAX(seq, excluded.seq)",
        params![id.as_str(), kind_str(kind), seq],
    )?;
    update_device(conn, id, msg, now)?;
    Ok(true)
}

/// Every message of `batch`, failing at the first refusal (the caller's transaction then rolls all
/// of them back).
pub(super) fn ingest_whole(
    conn: &Connection,
    batch: &[IngestItem],
    now: i64,
) -> StoreResult<Vec<Result<bool, StoreError>>> {
    batch
        .iter()
        .map(|m| ingest(conn, &m.device, m.kind, m.seq, &m.msg, now).map(Ok))
        .collect()
}

/// Every message of `batch` under its own savepoint: a refused one is rolled back alone.
pub(super) fn ingest_each(
    conn: &Connection,
    batch: &[IngestItem],
    now: i64,
) -> StoreResult<Vec<Result<bool, StoreError>>> {
    let mut out = Vec::with_capacity(batch.len());
    for m in batch {
        // Cached statements: parsing these twice per message cost as much as the insert.
        cached(conn, "SAVEPOINT one", [])?;
        let r = ingest(conn, &m.device, m.kind, m.seq, &m.msg, now);
        if r.is_err() {
            cached(conn, "ROLLBACK TO one", [])?;
        }
        cached(conn, "RELEASE one", [])?;
        out.push(r);
    }
    Ok(out)
}

/// One row of a query, from the prepared-statement cache.
pub(super) fn row<T>(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(p, f)
}

/// Runs a statement from the connection's cache (the ingest path runs the same few statements for
/// every message; parsing them each time was a tenth of the ingest cost).
pub(super) fn cached(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<usize> {
    conn.prepare_cached(sql)
        .and_then(|mut q| q.execute(p))
        .map_err(db)
}

/// Keeps the event unless its seq is stored already or too far below the highest (`last`).
fn insert_event(
    conn: &Connection,
    id: &DeviceId,
    seq: i64,
    last: Option<i64>,
    ev: &DeviceEvent,
) -> StoreResult<bool> {
    if last.is_some_and(|l| crate::store::event_too_old(seq, l)) {
        return Ok(false);
    }
    let inserted = cached(
        conn,
        "INSERT INTO events (device, seq, at, rollout, from_state, to_state, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (device, seq) DO NOTHING",
        params![id.as_str(), seq, ev.at, ev.rollout, ev.from, ev.to, ev.reason],
    )?;
    Ok(inserted == 1)
}

/// The device row's part of an accepted message; `NotFound` for an unknown device (the caller's
/// transaction then rolls the message back).
fn update_device(conn: &Connection, id: &DeviceId, msg: &Ingest, now: i64) -> StoreResult<()> {
    let dev = id.as_str();
    let changed = match msg {
        Ingest::Report(report) => cached(
            conn,
            "UPDATE devices SET report = ?2, last_seen = MAX(last_seen, ?3), online = 1 WHERE id = ?1",
            params![dev, to_json(report)?, now],
        ),
        // A row that would not change is not written: a write rewrites the row (report and all)
        // and moves it in the change feed, and a device's messages of one instant share a time.
        Ingest::Presence { online } => cached(
            conn,
            "UPDATE devices SET online = ?2, last_seen = MAX(last_seen, ?3)
             WHERE id = ?1 AND (online IS NOT ?2 OR last_seen < ?3)",
            params![dev, online, now],
        ),
        Ingest::Event(_) => cached(
            conn,
            "UPDATE devices SET last_seen = ?2 WHERE id = ?1 AND last_seen < ?2",
            params![dev, now],
        ),
    }?;
    let exists = || {
        row(conn, "SELECT 1 FROM devices WHERE id = ?1", params![dev], |_| {
            Ok(())
        })
        .optional()
    };
    if changed == 0 && exists().map_err(db)?.is_none() {
        return Err(StoreError::NotFound {
            what: "device",
            key: dev.to_owned(),
        });
    }
    Ok(())
}

pub(super) fn sequence_row(r: &Row<'_>) -> rusqlite::Result<(String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

pub(super) fn sequence((device, kind, seq): (String, String, i64)) -> StoreResult<(DeviceId, Kind, u64)> {
    Ok((device_id(device)?, kind_parse(&kind)?, seq.max(0) as u64))
}

type EventRow = (String, i64, i64, Option<String>, String, String, Option<String>);

pub(super) fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

pub(super) fn event((device, seq, at, rollout, from, to, reason): EventRow) -> StoreResult<DeviceEvent> {
    Ok(DeviceEvent {
        device: device_id(device)?,
        seq: seq.max(0) as u64,
        at,
        rollout,
        from,
        to,
        reason,
    })
}

pub(super) fn site_row(r: &Row<'_>) -> rusqlite::Result<(String, String, String, Option<i64>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

pub(super) fn site(
    (name, tz, windows, max_concurrent): (String, String, String, Option<i64>),
) -> StoreResult<Site> {
    Ok(Site {
        name,
        tz,
        windows: serde_json::from_str(&windows).map_err(json_err("site windows"))?,
        max_concurrent: max_concurrent.map(|m| m.clamp(0, i64::from(u32::MAX)) as u32),
    })
}
