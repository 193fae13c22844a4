//! Row mapping for releases, quarantines, deltas, rollouts, decisions, desired envelopes and audit.

use rusqlite::{Connection, Row, params};

use super::devices::{cached, device_id};
use super::{db, json_err, to_json};
use halyard_protocol::DeviceId;

use crate::model::{AuditEntry, Decision, Delta, DesiredRecord, Quarantine, Release, Rollout};
use crate::store::{StepCommit, StoreError, StoreResult};

fn u64_of(v: i64) -> u64 {
    v.max(0) as u64
}

pub(super) fn i64_of(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} {v} out of range")))
}

pub(super) const RELEASE_COLS: &str =
    "version, product, security_version, bundle_sha256, bundle_size, image_sha256, image_size, created_at";

pub(super) fn release_row(r: &Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        version: r.get(0)?,
        product: r.get(1)?,
        security_version: u64_of(r.get(2)?),
        bundle_sha256: r.get(3)?,
        bundle_size: u64_of(r.get(4)?),
        image_sha256: r.get(5)?,
        image_size: u64_of(r.get(6)?),
        created_at: r.get(7)?,
    })
}

pub(super) fn quarantine_row(r: &Row<'_>) -> rusqlite::Result<Quarantine> {
    Ok(Quarantine {
        version: r.get(0)?,
        hardware_class: r.get(1)?,
        reason: r.get(2)?,
        at: r.get(3)?,
    })
}

pub(super) fn delta_row(r: &Row<'_>) -> rusqlite::Result<Delta> {
    Ok(Delta {
        source_sha256: r.get(0)?,
        version: r.get(1)?,
        artifact_sha256: r.get(2)?,
        size: u64_of(r.get(3)?),
    })
}

pub(super) const ROLLOUT_COLS: &str = "id, version, selector, status, spec, state, created_at, updated_at";

type RolloutRow = (String, String, String, String, String, String, i64, i64);

pub(super) fn rollout_row(r: &Row<'_>) -> rusqlite::Result<RolloutRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

pub(super) fn rollout(row: RolloutRow) -> StoreResult<Rollout> {
    let (id, version, selector, status, spec, state, created_at, updated_at) = row;
    Ok(Rollout {
        id,
        version,
        selector,
        status,
        spec: serde_json::from_str(&spec).map_err(json_err("rollout spec"))?,
        state: serde_json::from_str(&state).map_err(json_err("rollout state"))?,
        created_at,
        updated_at,
    })
}

pub(super) fn decision_row(r: &Row<'_>) -> rusqlite::Result<Decision> {
    Ok(Decision {
        rollout: r.get(0)?,
        at: r.get(1)?,
        kind: r.get(2)?,
        message: r.get(3)?,
    })
}

pub(super) fn desired_row(r: &Row<'_>) -> rusqlite::Result<(String, i64, Option<String>, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

pub(super) fn desired(
    (device, seq, rollout, envelope): (String, i64, Option<String>, String),
) -> StoreResult<DesiredRecord> {
    Ok(DesiredRecord {
        device: device_id(device)?,
        seq: u64_of(seq),
        rollout,
        envelope,
    })
}

/// One device's last desired sequence number.
pub(super) fn desired_seq(r: &Row<'_>) -> rusqlite::Result<(String, i64)> {
    Ok((r.get(0)?, r.get(1)?))
}

pub(super) fn seq_of((device, seq): (String, i64)) -> StoreResult<(DeviceId, u64)> {
    Ok((device_id(device)?, u64_of(seq)))
}

pub(super) fn audit_row(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        at: r.get(0)?,
        actor: r.get(1)?,
        action: r.get(2)?,
        target: r.get(3)?,
        detail: r.get(4)?,
    })
}

pub(super) fn put_desired(conn: &Connection, d: &DesiredRecord) -> StoreResult<()> {
    let changed = cached(
        conn,
        "INSERT INTO desired (device, seq, rollout, envelope) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (device) DO UPDATE SET seq = excluded.seq, rollout = excluded.rollout,
             envelope = excluded.envelope WHERE excluded.seq > desired.seq",
        params![
            d.device.as_str(),
            i64_of(d.seq, "desired seq")?,
            d.rollout,
            d.envelope
        ],
    )?;
    if changed == 0 {
        return Err(StoreError::Conflict {
            what: "desired sequence",
            key: format!("{} seq {}", d.device, d.seq),
        });
    }
    Ok(())
}

pub(super) fn put_quarantine(conn: &Connection, q: &Quarantine) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO quarantines (version, hardware_class, reason, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (version, hardware_class) DO NOTHING",
        params![q.version, q.hardware_class, q.reason, q.at],
    )
    .map(|_| ())
    .map_err(db)
}

/// One engine step, inside the caller's transaction.
pub(super) fn commit_step(conn: &Connection, id: &str, step: &StepCommit, now: i64) -> StoreResult<i64> {
    let changed = conn
        .execute(
            "UPDATE rollouts SET status = ?2, state = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, step.status, to_json(&step.state)?, now],
        )
        .map_err(db)?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "rollout",
            key: id.to_owned(),
        });
    }
    for d in &step.decisions {
        cached(
            conn,
            "INSERT INTO decisions (rollout, at, kind, message) VALUES (?1, ?2, ?3, ?4)",
            params![id, d.at, d.kind, d.message],
        )?;
    }
    for d in &step.desired {
        put_desired(conn, d)?;
    }
    for q in &step.quarantines {
        put_quarantine(conn, q)?;
    }
    // The revision the update's trigger gave the row (a trigger's writes are not in RETURNING).
    conn.prepare_cached("SELECT rev FROM rollouts WHERE id = ?1")
        .and_then(|mut st| st.query_row(params![id], |r| r.get(0)))
        .map_err(db)
}
