//! The multi-statement writes, each inside the caller's transaction, with the row locks that make
//! them safe when several replicas write at once.

use halyard_protocol::{DeviceId, Kind};
use postgres::Transaction;

use super::TxResult;
use super::rows::{self, col, i64_of, kind_str, to_json};
use crate::leader::{self, Lease};
use crate::model::{DesiredRecord, Device, DeviceEvent, NewDevice, Quarantine};
use crate::store::{EnrollOutcome, Ingest, StepCommit, StoreError};

/// The one lease row of the rollout engine.
const ENGINE: &str = "engine";

pub(super) fn find_device(tx: &mut Transaction<'_>, id: &DeviceId) -> TxResult<Option<Device>> {
    let sql = format!("SELECT {} FROM devices WHERE id = $1", rows::DEVICE_COLS);
    tx.query_opt(&sql, &[&id.as_str()])?
        .map(|r| rows::device(&r))
        .transpose()
}

/// Consumes the token (locked `FOR UPDATE`: a concurrent use waits, then sees it used) and creates
/// (or re-confirms) the device.
pub(super) fn enroll(
    tx: &mut Transaction<'_>,
    token_hash: &str,
    new: &NewDevice,
    now: i64,
) -> TxResult<EnrollOutcome> {
    let sql = format!(
        "SELECT {} FROM enroll_tokens WHERE hash = $1 FOR UPDATE",
        rows::ENROLL_COLS
    );
    let Some(token) = tx.query_opt(&sql, &[&token_hash])? else {
        return Ok(EnrollOutcome::BadToken);
    };
    let token = rows::enroll_token(&token)?;
    if token.expires_at.is_some_and(|t| t <= now) {
        return Ok(EnrollOutcome::BadToken);
    }
    let existing = find_device(tx, &new.id)?;
    match (&token.used_by, existing) {
        (Some(user), Some(dev)) if user == &new.id => return Ok(same_or_conflict(dev, new)),
        (Some(_), _) => return Ok(EnrollOutcome::BadToken),
        (None, Some(_)) => return Ok(EnrollOutcome::KeyConflict),
        (None, None) => {}
    }
    // ON CONFLICT DO NOTHING: a concurrent enrollment of the same id or key with another token wins
    // the race cleanly instead of aborting this transaction.
    let inserted = tx.execute(
        "INSERT INTO devices (id, public_key, product, hardware_class, site, tags, enrolled_at, last_seen, online)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, FALSE) ON CONFLICT DO NOTHING",
        &[&new.id.as_str(), &new.public_key, &new.product, &new.hardware_class, &token.site,
          &to_json(&token.tags)?, &now],
    )?;
    if inserted == 0 {
        return Ok(EnrollOutcome::KeyConflict);
    }
    tx.execute(
        "UPDATE enroll_tokens SET used_by = $1 WHERE hash = $2",
        &[&new.id.as_str(), &token_hash],
    )?;
    find_device(tx, &new.id)?
        .map(|d| EnrollOutcome::Enrolled(Box::new(d)))
        .ok_or_else(|| StoreError::Backend("device vanished inside its own transaction".into()).into())
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

/// Stores one verified message unless it is a replay (see [`crate::store::Store::ingest`]).
/// `report` and `presence`: the replay guard is one conditional upsert that locks the (device, kind)
/// row, so of two replicas ingesting the same message exactly one sees a changed row. `event`: the
/// unique (device, seq) index decides (a concurrent insert of the same event waits, then does nothing).
pub(super) fn ingest(
    tx: &mut Transaction<'_>,
    id: &DeviceId,
    kind: Kind,
    seq: u64,
    msg: &Ingest,
    now: i64,
) -> TxResult<bool> {
    let seq = i64_of(seq, "sequence")?;
    let fresh = match msg {
        Ingest::Event(ev) => insert_event(tx, id, seq, ev)?,
        _ => raise_seq(tx, id, kind, seq)?,
    };
    if !fresh {
        return Ok(false);
    }
    update_device(tx, id, msg, now)?;
    Ok(true)
}

/// Raises the (device, kind) high-water mark to `seq`; false when it is there or above already.
fn raise_seq(tx: &mut Transaction<'_>, id: &DeviceId, kind: Kind, seq: i64) -> TxResult<bool> {
    let raised = tx.execute(
        "INSERT INTO sequences (device, kind, seq) VALUES ($1, $2, $3)
         ON CONFLICT (device, kind) DO UPDATE SET seq = excluded.seq WHERE sequences.seq < excluded.seq",
        &[&id.as_str(), &kind_str(kind), &seq],
    )?;
    Ok(raised == 1)
}

/// Keeps the event unless its seq is stored already or too far below the highest event seq, and
/// raises that highest one.
fn insert_event(tx: &mut Transaction<'_>, id: &DeviceId, seq: i64, ev: &DeviceEvent) -> TxResult<bool> {
    let dev = id.as_str();
    let kind = kind_str(Kind::Event);
    let highest = tx.query_opt(
        "SELECT seq FROM sequences WHERE device = $1 AND kind = $2",
        &[&dev, &kind],
    )?;
    if let Some(row) = highest
        && crate::store::event_too_old(seq, col(&row, 0)?)
    {
        return Ok(false);
    }
    let inserted = tx.execute(
        "INSERT INTO events (device, seq, at, rollout, from_state, to_state, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (device, seq) DO NOTHING",
        &[&dev, &seq, &ev.at, &ev.rollout, &ev.from, &ev.to, &ev.reason],
    )?;
    if inserted == 0 {
        return Ok(false);
    }
    raise_seq(tx, id, Kind::Event, seq)?;
    Ok(true)
}

/// The device row's part of an accepted message; `NotFound` for an unknown device (the caller's
/// transaction or savepoint then rolls the message back).
fn update_device(tx: &mut Transaction<'_>, id: &DeviceId, msg: &Ingest, now: i64) -> TxResult<()> {
    let dev = id.as_str();
    let changed = match msg {
        Ingest::Report(report) => tx.execute(
            "UPDATE devices SET report = $2, last_seen = GREATEST(last_seen, $3), online = TRUE WHERE id = $1",
            &[&dev, &to_json(report)?, &now],
        )?,
        // A row that would not change is not written (a new row version, a move in the change feed).
        Ingest::Presence { online } => tx.execute(
            "UPDATE devices SET online = $2, last_seen = GREATEST(last_seen, $3)
             WHERE id = $1 AND (online IS DISTINCT FROM $2 OR last_seen < $3)",
            &[&dev, online, &now],
        )?,
        Ingest::Event(_) => tx.execute(
            "UPDATE devices SET last_seen = $2 WHERE id = $1 AND last_seen < $2",
            &[&dev, &now],
        )?,
    };
    if changed == 0
        && tx
            .query_opt("SELECT 1 FROM devices WHERE id = $1", &[&dev])?
            .is_none()
    {
        return Err(StoreError::NotFound {
            what: "device",
            key: dev.to_owned(),
        }
        .into());
    }
    Ok(())
}

pub(super) fn put_desired(tx: &mut Transaction<'_>, d: &DesiredRecord) -> TxResult<()> {
    let changed = tx.execute(
        "INSERT INTO desired (device, seq, rollout, envelope) VALUES ($1, $2, $3, $4)
         ON CONFLICT (device) DO UPDATE SET seq = excluded.seq, rollout = excluded.rollout,
             envelope = excluded.envelope WHERE excluded.seq > desired.seq",
        &[
            &d.device.as_str(),
            &i64_of(d.seq, "desired seq")?,
            &d.rollout,
            &d.envelope,
        ],
    )?;
    if changed == 0 {
        return Err(StoreError::Conflict {
            what: "desired sequence",
            key: format!("{} seq {}", d.device, d.seq),
        }
        .into());
    }
    Ok(())
}

pub(super) fn put_quarantine(tx: &mut Transaction<'_>, q: &Quarantine) -> TxResult<()> {
    tx.execute(
        "INSERT INTO quarantines (version, hardware_class, reason, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (version, hardware_class) DO NOTHING",
        &[&q.version, &q.hardware_class, &q.reason, &q.at],
    )?;
    Ok(())
}

/// Checks the step's fence: the lease row is read `FOR SHARE`, so a takeover (which updates it)
/// waits for this transaction or this one sees the new epoch; the rollout row is locked `FOR UPDATE`.
fn check_fence(tx: &mut Transaction<'_>, id: &str, step: &StepCommit) -> TxResult<()> {
    if let Some(epoch) = step.fence.epoch {
        let row = tx.query_opt("SELECT epoch FROM leases WHERE name = $1 FOR SHARE", &[&ENGINE])?;
        let held = row.map(|r| col::<i64>(&r, 0)).transpose()?;
        if held != Some(i64_of(epoch, "epoch")?) {
            return Err(StoreError::Fenced {
                what: "engine lease epoch",
                key: format!("{epoch} (now {held:?})"),
            }
            .into());
        }
    }
    let row = tx.query_opt("SELECT rev FROM rollouts WHERE id = $1 FOR UPDATE", &[&id])?;
    let Some(row) = row else {
        return Err(StoreError::NotFound {
            what: "rollout",
            key: id.to_owned(),
        }
        .into());
    };
    if let Some(prior) = step.fence.prior_rev {
        let rev: i64 = col(&row, 0)?;
        if rev != prior {
            return Err(StoreError::Fenced {
                what: "rollout revision",
                key: id.to_owned(),
            }
            .into());
        }
    }
    Ok(())
}

/// One engine step: fence check, then state, decisions, desired envelopes and quarantines.
pub(super) fn commit_step(tx: &mut Transaction<'_>, id: &str, step: &StepCommit, now: i64) -> TxResult<i64> {
    check_fence(tx, id, step)?;
    // The BEFORE UPDATE trigger bumps `rev`, so RETURNING carries the new revision.
    let row = tx.query_one(
        "UPDATE rollouts SET status = $2, state = $3, updated_at = $4 WHERE id = $1 RETURNING rev",
        &[&id, &step.status, &to_json(&step.state)?, &now],
    )?;
    let rev: i64 = col(&row, 0)?;
    for d in &step.decisions {
        tx.execute(
            "INSERT INTO decisions (rollout, at, kind, message) VALUES ($1, $2, $3, $4)",
            &[&id, &d.at, &d.kind, &d.message],
        )?;
    }
    for d in &step.desired {
        put_desired(tx, d)?;
    }
    for q in &step.quarantines {
        put_quarantine(tx, q)?;
    }
    Ok(rev)
}

/// Takes or renews the engine lease by [`leader::decide`], on the database's clock (replica clocks
/// may disagree; the database's is the one every replica sees).
pub(super) fn engine_lease(tx: &mut Transaction<'_>, holder: &str, ttl_ms: i64) -> TxResult<Option<u64>> {
    tx.execute(
        "INSERT INTO leases (name, holder, epoch, expires_ms) VALUES ($1, '', 0, 0) ON CONFLICT DO NOTHING",
        &[&ENGINE],
    )?;
    let row = tx.query_one(
        "SELECT holder, epoch, expires_ms, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT
         FROM leases WHERE name = $1 FOR UPDATE",
        &[&ENGINE],
    )?;
    let current = Lease {
        holder: col(&row, 0)?,
        epoch: col::<i64>(&row, 1)?.max(0) as u64,
        expires_ms: col(&row, 2)?,
    };
    let now_ms: i64 = col(&row, 3)?;
    let Some(next) = leader::decide(&current, holder, now_ms, ttl_ms) else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE leases SET holder = $2, epoch = $3, expires_ms = $4 WHERE name = $1",
        &[
            &ENGINE,
            &next.holder,
            &i64_of(next.epoch, "epoch")?,
            &next.expires_ms,
        ],
    )?;
    Ok(Some(next.epoch))
}

/// Ends `holder`'s lease now (the epoch stays; the next holder bumps it).
pub(super) fn release_engine_lease(tx: &mut Transaction<'_>, holder: &str) -> TxResult<()> {
    tx.execute(
        "UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2",
        &[&ENGINE, &holder],
    )?;
    Ok(())
}
