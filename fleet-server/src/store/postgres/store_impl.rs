//! `impl Store for PgStore`: single statements on a pooled connection, multi-statement writes in
//! one transaction (see `writes`).

use halyard_protocol::{DeviceId, Kind};
use postgres::Row;
use postgres::types::ToSql;

use super::rows::{self, i64_of, to_json};
use super::{PgStore, TxResult, writes};
use crate::model::{
    ApiToken, AuditEntry, Decision, Delta, DesiredRecord, Device, DeviceEvent, EnrollToken, NewDevice,
    Quarantine, Release, Rollout, Site,
};
use crate::store::{
    ChangeMark, EnrollOutcome, Ingest, IngestItem, RolloutRev, StepCommit, Store, StoreError, StoreResult,
};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl PgStore {
    fn all<T>(&self, sql: &str, p: Params<'_>, f: impl Fn(&Row) -> TxResult<T>) -> StoreResult<Vec<T>> {
        self.with(|c| c.query(sql, p)?.iter().map(&f).collect())
    }

    fn first<T>(&self, sql: &str, p: Params<'_>, f: impl Fn(&Row) -> TxResult<T>) -> StoreResult<Option<T>> {
        self.with(|c| c.query_opt(sql, p)?.map(|r| f(&r)).transpose())
    }

    fn exec(&self, sql: &str, p: Params<'_>) -> StoreResult<u64> {
        self.with(|c| Ok(c.execute(sql, p)?))
    }

    /// One ingest in its own savepoint, so a failed message leaves the rest of the batch standing.
    fn ingest_one(
        tx: &mut postgres::Transaction<'_>,
        m: &IngestItem,
        now: i64,
    ) -> TxResult<Result<bool, StoreError>> {
        let mut sp = tx.savepoint("one")?;
        match writes::ingest(&mut sp, &m.device, m.kind, m.seq, &m.msg, now) {
            Ok(fresh) => {
                sp.commit()?;
                Ok(Ok(fresh))
            }
            Err(super::TxError::Store(e)) => Ok(Err(e)),
            Err(super::TxError::Db(e)) if e.as_db_error().is_some() && !super::retryable(&e) => {
                Ok(Err(super::db(e)))
            }
            Err(e) => Err(e),
        }
    }
}

impl PgStore {
    /// The engine lease as stored (holder, epoch, expiry), for operators and tests.
    pub fn engine_lease_row(&self) -> StoreResult<Option<crate::leader::Lease>> {
        self.first(
            "SELECT holder, epoch, expires_ms FROM leases WHERE name = 'engine'",
            &[],
            |r| {
                Ok(crate::leader::Lease {
                    holder: rows::col(r, 0)?,
                    epoch: rows::col::<i64>(r, 1)?.max(0) as u64,
                    expires_ms: rows::col(r, 2)?,
                })
            },
        )
    }
}

fn not_found(what: &'static str, key: &str) -> StoreError {
    StoreError::NotFound {
        what,
        key: key.to_owned(),
    }
}

fn conflict(what: &'static str, key: &str) -> StoreError {
    StoreError::Conflict {
        what,
        key: key.to_owned(),
    }
}

impl Store for PgStore {
    fn put_api_token(&self, hash: &str, t: &ApiToken) -> StoreResult<()> {
        self.exec(
            "INSERT INTO api_tokens (hash, id, name, role, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[&hash, &t.id, &t.name, &t.role.as_str(), &t.created_at],
        )
        .map(|_| ())
    }

    fn api_token(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        self.first(
            "SELECT id, name, role, created_at FROM api_tokens WHERE hash = $1",
            &[&hash],
            rows::api_token,
        )
    }

    fn api_tokens(&self) -> StoreResult<Vec<ApiToken>> {
        self.all(
            "SELECT id, name, role, created_at FROM api_tokens ORDER BY created_at, id",
            &[],
            rows::api_token,
        )
    }

    fn revoke_api_token(&self, id: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM api_tokens WHERE id = $1", &[&id])? > 0)
    }

    fn put_enroll_token(&self, hash: &str, t: &EnrollToken) -> StoreResult<()> {
        self.exec(
            "INSERT INTO enroll_tokens (hash, id, site, tags, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&hash, &t.id, &t.site, &to_json(&t.tags)?, &t.created_at, &t.expires_at],
        )
        .map(|_| ())
    }

    fn put_enroll_tokens(&self, tokens: &[(String, EnrollToken)]) -> StoreResult<()> {
        self.tx(|tx| {
            for (hash, t) in tokens {
                let tags = to_json(&t.tags)?;
                tx.execute(
                    "INSERT INTO enroll_tokens (hash, id, site, tags, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[hash, &t.id, &t.site, &tags, &t.created_at, &t.expires_at],
                )?;
            }
            Ok(())
        })
    }

    fn enroll_tokens(&self) -> StoreResult<Vec<EnrollToken>> {
        let sql = format!(
            "SELECT {} FROM enroll_tokens ORDER BY created_at, id",
            rows::ENROLL_COLS
        );
        self.all(&sql, &[], rows::enroll_token)
    }

    fn enroll(&self, hash: &str, device: &NewDevice, now: i64) -> StoreResult<EnrollOutcome> {
        self.tx(|tx| writes::enroll(tx, hash, device, now))
    }

    fn device(&self, id: &DeviceId) -> StoreResult<Option<Device>> {
        let sql = format!("SELECT {} FROM devices WHERE id = $1", rows::DEVICE_COLS);
        self.first(&sql, &[&id.as_str()], rows::device)
    }

    fn devices(&self) -> StoreResult<Vec<Device>> {
        let sql = format!("SELECT {} FROM devices ORDER BY id", rows::DEVICE_COLS);
        self.all(&sql, &[], rows::device)
    }

    fn devices_changed(&self, since: Option<ChangeMark>) -> StoreResult<(Vec<Device>, ChangeMark)> {
        // The next mark is the oldest transaction still running, taken BEFORE the rows are read:
        // anything that commits later has an id at or above it, and anything below it has committed
        // and is visible to the read that follows (migration 4 stamps each write with its id).
        self.with(|c| {
            let horizon: i64 = c
                .query_one(
                    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                    &[],
                )?
                .get(0);
            let from = since.map_or(0, |m| m.0).to_string();
            let sql = format!(
                "SELECT {} FROM devices WHERE changed >= $1::text::xid8",
                rows::DEVICE_COLS
            );
            let devices = c
                .query(&sql, &[&from])?
                .iter()
                .map(rows::device)
                .collect::<TxResult<Vec<_>>>()?;
            Ok((devices, ChangeMark(horizon)))
        })
    }

    fn device_counts(&self) -> StoreResult<(u64, u64)> {
        let counts = self.first(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE online) FROM devices",
            &[],
            |r| Ok((rows::col::<i64>(r, 0)?, rows::col::<i64>(r, 1)?)),
        )?;
        let (all, online) = counts.unwrap_or((0, 0));
        Ok((all.max(0) as u64, online.max(0) as u64))
    }

    fn set_device_labels(&self, id: &DeviceId, site: Option<&str>, tags: &[String]) -> StoreResult<()> {
        let n = self.exec(
            "UPDATE devices SET site = $2, tags = $3 WHERE id = $1",
            &[&id.as_str(), &site, &to_json(&tags)?],
        )?;
        if n == 0 {
            return Err(not_found("device", id.as_str()));
        }
        Ok(())
    }

    fn ingest(&self, id: &DeviceId, kind: Kind, seq: u64, msg: &Ingest, now: i64) -> StoreResult<bool> {
        self.tx(|tx| writes::ingest(tx, id, kind, seq, msg, now))
    }

    fn ingest_batch(&self, batch: &[IngestItem], now: i64) -> StoreResult<Vec<Result<bool, StoreError>>> {
        // Row locks are taken in (device, kind) order, so two replicas ingesting overlapping batches
        // cannot deadlock; the per-device order of messages is kept (stable sort).
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| (batch[i].device.as_str(), rows::kind_str(batch[i].kind)));
        self.tx(|tx| {
            let mut out: Vec<Result<bool, StoreError>> = Vec::new();
            out.resize_with(batch.len(), || Ok(false));
            for &i in &order {
                out[i] = Self::ingest_one(tx, &batch[i], now)?;
            }
            Ok(out)
        })
    }

    fn sequences(&self) -> StoreResult<Vec<(DeviceId, Kind, u64)>> {
        self.all("SELECT device, kind, seq FROM sequences", &[], rows::sequence)
    }

    fn device_events(&self, id: &DeviceId, limit: u32) -> StoreResult<Vec<DeviceEvent>> {
        self.all(
            "SELECT device, seq, at, rollout, from_state, to_state, reason FROM
               (SELECT * FROM events WHERE device = $1 ORDER BY seq DESC LIMIT $2) e ORDER BY seq",
            &[&id.as_str(), &i64::from(limit)],
            rows::event,
        )
    }

    fn put_site(&self, s: &Site) -> StoreResult<()> {
        self.exec(
            "INSERT INTO sites (name, tz, windows, max_concurrent) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET tz = excluded.tz, windows = excluded.windows,
                 max_concurrent = excluded.max_concurrent",
            &[
                &s.name,
                &s.tz,
                &to_json(&s.windows)?,
                &s.max_concurrent.map(i64::from),
            ],
        )
        .map(|_| ())
    }

    fn sites(&self) -> StoreResult<Vec<Site>> {
        self.all(
            "SELECT name, tz, windows, max_concurrent FROM sites ORDER BY name",
            &[],
            rows::site,
        )
    }

    fn delete_site(&self, name: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM sites WHERE name = $1", &[&name])? > 0)
    }

    fn put_release(&self, r: &Release) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO releases ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            rows::RELEASE_COLS
        );
        let n = self.exec(
            &sql,
            &[
                &r.version,
                &r.product,
                &i64_of(r.security_version, "security version")?,
                &r.bundle_sha256,
                &i64_of(r.bundle_size, "size")?,
                &r.image_sha256,
                &i64_of(r.image_size, "size")?,
                &r.created_at,
            ],
        )?;
        if n == 0 {
            return Err(conflict("release", &r.version));
        }
        Ok(())
    }

    fn releases(&self) -> StoreResult<Vec<Release>> {
        let sql = format!(
            "SELECT {} FROM releases ORDER BY created_at, version",
            rows::RELEASE_COLS
        );
        self.all(&sql, &[], rows::release)
    }

    fn release(&self, version: &str) -> StoreResult<Option<Release>> {
        let sql = format!("SELECT {} FROM releases WHERE version = $1", rows::RELEASE_COLS);
        self.first(&sql, &[&version], rows::release)
    }

    fn put_quarantine(&self, q: &Quarantine) -> StoreResult<()> {
        self.tx(|tx| writes::put_quarantine(tx, q))
    }

    fn lift_quarantine(&self, version: &str, hw: &str) -> StoreResult<bool> {
        Ok(self.exec(
            "DELETE FROM quarantines WHERE version = $1 AND hardware_class = $2",
            &[&version, &hw],
        )? > 0)
    }

    fn quarantines(&self) -> StoreResult<Vec<Quarantine>> {
        self.all(
            "SELECT version, hardware_class, reason, at FROM quarantines ORDER BY at, version",
            &[],
            rows::quarantine,
        )
    }

    fn put_delta(&self, d: &Delta) -> StoreResult<()> {
        self.exec(
            "INSERT INTO deltas (source_sha256, version, artifact_sha256, size) VALUES ($1, $2, $3, $4)
             ON CONFLICT (source_sha256, version) DO UPDATE SET artifact_sha256 = excluded.artifact_sha256,
                 size = excluded.size",
            &[
                &d.source_sha256,
                &d.version,
                &d.artifact_sha256,
                &i64_of(d.size, "size")?,
            ],
        )
        .map(|_| ())
    }

    fn deltas(&self, version: &str) -> StoreResult<Vec<Delta>> {
        self.all(
            "SELECT source_sha256, version, artifact_sha256, size FROM deltas WHERE version = $1 ORDER BY source_sha256",
            &[&version],
            rows::delta,
        )
    }

    fn put_rollout(&self, r: &Rollout) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO rollouts ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            rows::ROLLOUT_COLS
        );
        let n = self.exec(
            &sql,
            &[
                &r.id,
                &r.version,
                &r.selector,
                &r.status,
                &to_json(&r.spec)?,
                &to_json(&r.state)?,
                &r.created_at,
                &r.updated_at,
            ],
        )?;
        if n == 0 {
            return Err(conflict("rollout", &r.id));
        }
        Ok(())
    }

    fn rollout(&self, id: &str) -> StoreResult<Option<Rollout>> {
        let sql = format!("SELECT {} FROM rollouts WHERE id = $1", rows::ROLLOUT_COLS);
        self.first(&sql, &[&id], rows::rollout)
    }

    fn rollout_with_rev(&self, id: &str) -> StoreResult<Option<(Rollout, i64)>> {
        let sql = format!("SELECT {}, rev FROM rollouts WHERE id = $1", rows::ROLLOUT_COLS);
        self.first(&sql, &[&id], |r| Ok((rows::rollout(r)?, rows::col(r, 8)?)))
    }

    fn rollouts(&self) -> StoreResult<Vec<Rollout>> {
        let sql = format!(
            "SELECT {} FROM rollouts ORDER BY created_at, id",
            rows::ROLLOUT_COLS
        );
        self.all(&sql, &[], rows::rollout)
    }

    fn rollout_revs(&self) -> StoreResult<Vec<RolloutRev>> {
        self.all(
            "SELECT id, status, rev FROM rollouts ORDER BY created_at, id",
            &[],
            |r| {
                Ok(RolloutRev {
                    id: rows::col(r, 0)?,
                    status: rows::col(r, 1)?,
                    rev: rows::col(r, 2)?,
                })
            },
        )
    }

    fn commit_step(&self, rollout: &str, step: &StepCommit, now: i64) -> StoreResult<i64> {
        self.tx(|tx| writes::commit_step(tx, rollout, step, now))
    }

    fn decisions(&self, rollout: &str) -> StoreResult<Vec<Decision>> {
        self.all(
            "SELECT rollout, at, kind, message FROM decisions WHERE rollout = $1 ORDER BY id",
            &[&rollout],
            rows::decision,
        )
    }

    fn desired(&self, id: &DeviceId) -> StoreResult<Option<DesiredRecord>> {
        self.first(
            "SELECT device, seq, rollout, envelope FROM desired WHERE device = $1",
            &[&id.as_str()],
            rows::desired,
        )
    }

    fn all_desired(&self) -> StoreResult<Vec<DesiredRecord>> {
        self.all(
            "SELECT device, seq, rollout, envelope FROM desired ORDER BY device",
            &[],
            rows::desired,
        )
    }

    fn desired_seqs(&self) -> StoreResult<Vec<(DeviceId, u64)>> {
        self.all("SELECT device, seq FROM desired", &[], |r| {
            Ok((rows::device_id(rows::col(r, 0)?)?, rows::u64_of(rows::col(r, 1)?)))
        })
    }

    fn desired_seq(&self, id: &DeviceId) -> StoreResult<u64> {
        Ok(self.desired(id)?.map_or(0, |d| d.seq))
    }

    fn put_desired(&self, record: &DesiredRecord) -> StoreResult<()> {
        self.tx(|tx| writes::put_desired(tx, record))
    }

    fn audit(&self, e: &AuditEntry) -> StoreResult<()> {
        self.exec(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
            &[&e.at, &e.actor, &e.action, &e.target, &e.detail],
        )
        .map(|_| ())
    }

    fn audit_log(&self, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        self.all(
            "SELECT at, actor, action, target, detail FROM
               (SELECT * FROM audit ORDER BY id DESC LIMIT $1) a ORDER BY id",
            &[&i64::from(limit)],
            rows::audit,
        )
    }

    fn put_broker_credential(&self, id: &DeviceId, hash: &str, now: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO broker_credentials (device, hash, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (device) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
            &[&id.as_str(), &hash, &now],
        )
        .map(|_| ())
    }

    fn broker_credential(&self, id: &DeviceId) -> StoreResult<Option<String>> {
        self.first(
            "SELECT hash FROM broker_credentials WHERE device = $1",
            &[&id.as_str()],
            |r| rows::col(r, 0),
        )
    }

    fn broker_credentials(&self) -> StoreResult<Vec<(DeviceId, String)>> {
        self.all(
            "SELECT device, hash FROM broker_credentials ORDER BY device",
            &[],
            |r| {
                let id: String = rows::col(r, 0)?;
                let id = DeviceId::new(id).map_err(|e| StoreError::Corrupt {
                    what: "broker credential",
                    reason: e.to_string(),
                })?;
                Ok((id, rows::col(r, 1)?))
            },
        )
    }

    fn meta(&self, key: &str) -> StoreResult<Option<String>> {
        self.first("SELECT value FROM meta WHERE key = $1", &[&key], |r| {
            rows::col(r, 0)
        })
    }

    fn put_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        self.exec(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )
        .map(|_| ())
    }

    fn engine_lease(&self, holder: &str, ttl_ms: i64) -> StoreResult<Option<u64>> {
        self.tx(|tx| writes::engine_lease(tx, holder, ttl_ms))
    }

    fn release_engine_lease(&self, holder: &str) -> StoreResult<()> {
        self.tx(|tx| writes::release_engine_lease(tx, holder))
    }
}
