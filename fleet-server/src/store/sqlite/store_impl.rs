//! `impl Store for SqliteStore`: each method one statement or one transaction.

use halyard_protocol::{DeviceId, Kind};
use rusqlite::{OptionalExtension, Params, Row, params};

use super::devices as dv;
use super::rollouts as ro;
use super::{SqliteStore, db, to_json};
use crate::model::{
    ApiToken, AuditEntry, Decision, Delta, DesiredRecord, Device, DeviceEvent, EnrollToken, NewDevice,
    Quarantine, Release, Rollout, Site,
};
use crate::store::{
    ChangeMark, EnrollOutcome, Ingest, IngestItem, RolloutRev, StepCommit, Store, StoreError, StoreResult,
};

impl SqliteStore {
    fn all<T, P: Params>(
        &self,
        sql: &str,
        p: P,
        f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql).map_err(db)?;
        let rows = stmt.query_map(p, f).map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn exec<P: Params>(&self, sql: &str, p: P) -> StoreResult<usize> {
        dv::cached(&self.conn(), sql, p)
    }

    fn tx<T>(&self, f: impl FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let out = f(&tx)?;
        tx.commit().map_err(db)?;
        Ok(out)
    }
}

fn map_all<R, T>(rows: Vec<R>, f: impl Fn(R) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.into_iter().map(f).collect()
}

impl Store for SqliteStore {
    fn put_api_token(&self, hash: &str, t: &ApiToken) -> StoreResult<()> {
        self.exec(
            "INSERT INTO api_tokens (hash, id, name, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash, t.id, t.name, t.role.as_str(), t.created_at],
        )
        .map(|_| ())
    }

    fn api_token(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        let rows = self.all(
            "SELECT id, name, role, created_at FROM api_tokens WHERE hash = ?1",
            params![hash],
            dv::api_token_row,
        )?;
        rows.into_iter().next().map(dv::api_token).transpose()
    }

    fn api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        let rows = self.all(
            "SELECT id, name, role, created_at FROM api_tokens ORDER BY created_at, id",
            [],
            dv::api_token_row,
        )?;
        map_all(rows, dv::api_token)
    }

    fn revoke_api_token(&self, id: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM api_tokens WHERE id = ?1", params![id])? > 0)
    }

    fn put_enroll_token(&self, hash: &str, t: &EnrollToken) -> StoreResult<()> {
        self.exec(
            "INSERT INTO enroll_tokens (hash, id, site, tags, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![hash, t.id, t.site, to_json(&t.tags)?, t.created_at, t.expires_at],
        )
        .map(|_| ())
    }

    fn put_enroll_tokens(&self, tokens: &[(String, EnrollToken)]) -> StoreResult<()> {
        self.tx(|tx| {
            for (hash, t) in tokens {
                dv::cached(
                    tx,
                    "INSERT INTO enroll_tokens (hash, id, site, tags, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![hash, t.id, t.site, to_json(&t.tags)?, t.created_at, t.expires_at],
                )?;
            }
            Ok(())
        })
    }

    fn enroll_tokens(&self) -> StoreResult<Vec<EnrollToken>> {
        let rows = self.all(
            "SELECT id, site, tags, created_at, expires_at, used_by FROM enroll_tokens ORDER BY created_at, id",
            [],
            dv::enroll_row,
        )?;
        map_all(rows, dv::enroll_token)
    }

    fn enroll(&self, hash: &str, device: &NewDevice, now: i64) -> StoreResult<EnrollOutcome> {
        self.tx(|tx| dv::enroll(tx, hash, device, now))
    }

    fn enroll_many(&self, batch: &[(String, NewDevice)], now: i64) -> StoreResult<Vec<EnrollOutcome>> {
        // A refused device writes nothing (dv::enroll decides before its first write), so one
        // transaction holds them all.
        self.tx(|tx| {
            batch
                .iter()
                .map(|(hash, device)| dv::enroll(tx, hash, device, now))
                .collect()
        })
    }

    fn device(&self, id: &DeviceId) -> StoreResult<Option<Device>> {
        dv::find_device(&self.conn(), id)
    }

    fn device_counts(&self) -> StoreResult<(u64, u64)> {
        self.conn()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(online), 0) FROM devices",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(db)
    }

    fn devices(&self) -> StoreResult<Vec<Device>> {
        let rows = self.all(
            &format!("SELECT {} FROM devices ORDER BY id", dv::DEVICE_COLS),
            [],
            dv::device_row,
        )?;
        map_all(rows, dv::device)
    }

    fn devices_changed(&self, since: Option<ChangeMark>) -> StoreResult<(Vec<Device>, ChangeMark)> {
        // Writers are serial and every write takes the next rev (migration 4), so a write that
        // commits after this read gets a rev above the highest one this read sees.
        let after = since.map_or(-1, |m| m.0);
        let rows = self.all(
            &format!(
                "SELECT {}, rev FROM devices WHERE rev > ?1 ORDER BY rev",
                dv::DEVICE_COLS
            ),
            params![after],
            |r| Ok((dv::device_row(r)?, r.get::<_, i64>(10)?)),
        )?;
        let mark = rows.last().map_or(after.max(0), |(_, rev)| *rev);
        let devices = map_all(rows.into_iter().map(|(d, _)| d).collect(), dv::device)?;
        Ok((devices, ChangeMark(mark)))
    }

    fn set_device_labels(&self, id: &DeviceId, site: Option<&str>, tags: &[String]) -> StoreResult<()> {
        let n = self.exec(
            "UPDATE devices SET site = ?2, tags = ?3 WHERE id = ?1",
            params![id.as_str(), site, to_json(&tags)?],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "device",
                key: id.to_string(),
            });
        }
        Ok(())
    }

    fn ingest(&self, id: &DeviceId, kind: Kind, seq: u64, msg: &Ingest, now: i64) -> StoreResult<bool> {
        self.tx(|tx| dv::ingest(tx, id, kind, seq, msg, now))
    }

    fn ingest_batch(&self, batch: &[IngestItem], now: i64) -> StoreResult<Vec<Result<bool, StoreError>>> {
        // Nearly every batch stores whole: one transaction without savepoints (each cost a
        // sub-journal copy of every page its message touched). A refusal rolls that back and the
        // batch runs again a message at a time, so one bad message costs the others nothing.
        self.tx(|tx| dv::ingest_whole(tx, batch, now))
            .or_else(|_| self.tx(|tx| dv::ingest_each(tx, batch, now)))
    }

    fn ingest_batches(
        &self,
        batches: &[(Vec<IngestItem>, i64)],
    ) -> StoreResult<Vec<Vec<Result<bool, StoreError>>>> {
        // All in one transaction (a commit was a third of the ingest's time when batches are
        // small); a refusal rolls it back and every batch runs again a message at a time.
        self.tx(|tx| {
            batches
                .iter()
                .map(|(batch, now)| dv::ingest_whole(tx, batch, *now))
                .collect()
        })
        .or_else(|_| {
            batches
                .iter()
                .map(|(batch, now)| self.tx(|tx| dv::ingest_each(tx, batch, *now)))
                .collect()
        })
    }

    fn sequences(&self) -> StoreResult<Vec<(DeviceId, Kind, u64)>> {
        let rows = self.all("SELECT device, kind, seq FROM sequences", [], dv::sequence_row)?;
        map_all(rows, dv::sequence)
    }

    fn device_events(&self, id: &DeviceId, limit: u32) -> StoreResult<Vec<DeviceEvent>> {
        let rows = self.all(
            "SELECT device, seq, at, rollout, from_state, to_state, reason FROM
               (SELECT * FROM events WHERE device = ?1 ORDER BY seq DESC LIMIT ?2) ORDER BY seq",
            params![id.as_str(), limit],
            dv::event_row,
        )?;
        map_all(rows, dv::event)
    }

    fn put_site(&self, s: &Site) -> StoreResult<()> {
        self.exec(
            "INSERT INTO sites (name, tz, windows, max_concurrent) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET tz = excluded.tz, windows = excluded.windows,
                 max_concurrent = excluded.max_concurrent",
            params![s.name, s.tz, to_json(&s.windows)?, s.max_concurrent],
        )
        .map(|_| ())
    }

    fn sites(&self) -> StoreResult<Vec<Site>> {
        let rows = self.all(
            "SELECT name, tz, windows, max_concurrent FROM sites ORDER BY name",
            [],
            dv::site_row,
        )?;
        map_all(rows, dv::site)
    }

    fn delete_site(&self, name: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM sites WHERE name = ?1", params![name])? > 0)
    }

    fn put_release(&self, r: &Release) -> StoreResult<()> {
        let n = self.exec(
            &format!(
                "INSERT INTO releases ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                ro::RELEASE_COLS
            ),
            params![
                r.version,
                r.product,
                ro::i64_of(r.security_version, "security version")?,
                r.bundle_sha256,
                ro::i64_of(r.bundle_size, "size")?,
                r.image_sha256,
                ro::i64_of(r.image_size, "size")?,
                r.created_at
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict {
                what: "release",
                key: r.version.clone(),
            });
        }
        Ok(())
    }

    fn releases(&self) -> StoreResult<Vec<Release>> {
        self.all(
            &format!(
                "SELECT {} FROM releases ORDER BY created_at, version",
                ro::RELEASE_COLS
            ),
            [],
            ro::release_row,
        )
    }

    fn release(&self, version: &str) -> StoreResult<Option<Release>> {
        let sql = format!("SELECT {} FROM releases WHERE version = ?1", ro::RELEASE_COLS);
        self.conn()
            .query_row(&sql, params![version], ro::release_row)
            .optional()
            .map_err(db)
    }

    fn put_quarantine(&self, q: &Quarantine) -> StoreResult<()> {
        ro::put_quarantine(&self.conn(), q)
    }

    fn lift_quarantine(&self, version: &str, hw: &str) -> StoreResult<bool> {
        Ok(self.exec(
            "DELETE FROM quarantines WHERE version = ?1 AND hardware_class = ?2",
            params![version, hw],
        )? > 0)
    }

    fn quarantines(&self) -> StoreResult<Vec<Quarantine>> {
        self.all(
            "SELECT version, hardware_class, reason, at FROM quarantines ORDER BY at, version",
            [],
            ro::quarantine_row,
        )
    }

    fn put_delta(&self, d: &Delta) -> StoreResult<()> {
        self.exec(
            "INSERT INTO deltas (source_sha256, version, artifact_sha256, size) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source_sha256, version) DO UPDATE SET artifact_sha256 = excluded.artifact_sha256,
                 size = excluded.size",
            params![
                d.source_sha256,
                d.version,
                d.artifact_sha256,
                ro::i64_of(d.size, "size")?
            ],
        )
        .map(|_| ())
    }

    fn deltas(&self, version: &str) -> StoreResult<Vec<Delta>> {
        self.all(
            "SELECT source_sha256, version, artifact_sha256, size FROM deltas WHERE version = ?1 ORDER BY source_sha256",
            params![version],
            ro::delta_row,
        )
    }

    fn put_rollout(&self, r: &Rollout) -> StoreResult<()> {
        let n = self.exec(
            &format!(
                "INSERT INTO rollouts ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                ro::ROLLOUT_COLS
            ),
            params![
                r.id,
                r.version,
                r.selector,
                r.status,
                to_json(&r.spec)?,
                to_json(&r.state)?,
                r.created_at,
                r.updated_at
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict {
                what: "rollout",
                key: r.id.clone(),
            });
        }
        Ok(())
    }

    fn rollout(&self, id: &str) -> StoreResult<Option<Rollout>> {
        let rows = self.all(
            &format!("SELECT {} FROM rollouts WHERE id = ?1", ro::ROLLOUT_COLS),
            params![id],
            ro::rollout_row,
        )?;
        rows.into_iter().next().map(ro::rollout).transpose()
    }

    fn rollout_with_rev(&self, id: &str) -> StoreResult<Option<(Rollout, i64)>> {
        let rows = self.all(
            &format!("SELECT {}, rev FROM rollouts WHERE id = ?1", ro::ROLLOUT_COLS),
            params![id],
            |r| Ok((ro::rollout_row(r)?, r.get::<_, i64>(8)?)),
        )?;
        let Some((row, rev)) = rows.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some((ro::rollout(row)?, rev)))
    }

    fn rollouts(&self) -> StoreResult<Vec<Rollout>> {
        let rows = self.all(
            &format!(
                "SELECT {} FROM rollouts ORDER BY created_at, id",
                ro::ROLLOUT_COLS
            ),
            [],
            ro::rollout_row,
        )?;
        map_all(rows, ro::rollout)
    }

    fn rollout_revs(&self) -> StoreResult<Vec<RolloutRev>> {
        self.all(
            "SELECT id, status, rev FROM rollouts ORDER BY created_at, id",
            [],
            |r| {
                Ok(RolloutRev {
                    id: r.get(0)?,
                    status: r.get(1)?,
                    rev: r.get(2)?,
                })
            },
        )
    }

    fn commit_step(&self, rollout: &str, step: &StepCommit, now: i64) -> StoreResult<i64> {
        self.tx(|tx| ro::commit_step(tx, rollout, step, now))
    }

    fn decisions(&self, rollout: &str) -> StoreResult<Vec<Decision>> {
        self.all(
            "SELECT rollout, at, kind, message FROM decisions WHERE rollout = ?1 ORDER BY id",
            params![rollout],
            ro::decision_row,
        )
    }

    fn desired(&self, id: &DeviceId) -> StoreResult<Option<DesiredRecord>> {
        let rows = self.all(
            "SELECT device, seq, rollout, envelope FROM desired WHERE device = ?1",
            params![id.as_str()],
            ro::desired_row,
        )?;
        rows.into_iter().next().map(ro::desired).transpose()
    }

    fn all_desired(&self) -> StoreResult<Vec<DesiredRecord>> {
        let rows = self.all(
            "SELECT device, seq, rollout, envelope FROM desired ORDER BY device",
            [],
            ro::desired_row,
        )?;
        map_all(rows, ro::desired)
    }

    fn desired_seqs(&self) -> StoreResult<Vec<(DeviceId, u64)>> {
        let rows = self.all("SELECT device, seq FROM desired", [], ro::desired_seq)?;
        map_all(rows, ro::seq_of)
    }

    fn desired_seq(&self, id: &DeviceId) -> StoreResult<u64> {
        Ok(self.desired(id)?.map_or(0, |d| d.seq))
    }

    fn put_desired(&self, record: &DesiredRecord) -> StoreResult<()> {
        ro::put_desired(&self.conn(), record)
    }

    fn put_broker_credential(&self, id: &DeviceId, hash: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO broker_credentials (device, hash, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (device) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
            params![id.as_str(), hash, now],
        )
        .map(|_| ())
    }

    fn broker_credential(&self, id: &DeviceId) -> StoreResult<Option<String>> {
        self.conn()
            .query_row(
                "SELECT hash FROM broker_credentials WHERE device = ?1",
                params![id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
    }

    fn broker_credentials(&self) -> StoreResult<Vec<(DeviceId, String)>> {
        let rows = self.all(
            "SELECT device, hash FROM broker_credentials ORDER BY device",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )?;
        rows.into_iter()
            .map(|(id, hash)| {
                let id = DeviceId::new(id).map_err(|e| StoreError::Corrupt {
                    what: "broker credential",
                    reason: e.to_string(),
                })?;
                Ok((id, hash))
            })
            .collect()
    }

    fn audit(&self, e: &AuditEntry) -> StoreResult<()> {
        self.exec(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.at, e.actor, e.action, e.target, e.detail],
        )
        .map(|_| ())
    }

    fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        self.all(
            "SELECT at, actor, action, target, detail FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?1) ORDER BY id",
            params![limit],
            ro::audit_row,
        )
    }

    fn meta(&self, key: &str) -> StoreResult<Option<String>> {
        self.meta_get(key)
    }

    fn put_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        self.meta_put(key, value)
    }
}
