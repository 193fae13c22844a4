//! PostgreSQL schema migrations. Each entry moves the schema from version `i` to `i + 1`; the applied
//! version lives in the one-row `schema_version` table. Never edit a released entry; append one.
//! The tables mirror the SQLite schema (`store::migrations`), plus the engine lease.

/// Migrations in order.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE api_tokens (hash TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
        role TEXT NOT NULL, created_at BIGINT NOT NULL);
    CREATE TABLE enroll_tokens (hash TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, site TEXT,
        tags TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT, used_by TEXT);
    CREATE TABLE devices (id TEXT PRIMARY KEY, public_key TEXT NOT NULL UNIQUE, product TEXT NOT NULL,
        hardware_class TEXT NOT NULL, site TEXT, tags TEXT NOT NULL, enrolled_at BIGINT NOT NULL,
        last_seen BIGINT NOT NULL, online BOOLEAN NOT NULL, report TEXT);
    CREATE TABLE sequences (device TEXT NOT NULL, kind TEXT NOT NULL, seq BIGINT NOT NULL,
        PRIMARY KEY (device, kind));
    CREATE TABLE events (id BIGSERIAL PRIMARY KEY, device TEXT NOT NULL, seq BIGINT NOT NULL,
        at BIGINT NOT NULL, rollout TEXT, from_state TEXT NOT NULL, to_state TEXT NOT NULL, reason TEXT);
    CREATE INDEX events_device ON events (device, id);
    CREATE TABLE sites (name TEXT PRIMARY KEY, tz TEXT NOT NULL, windows TEXT NOT NULL,
        max_concurrent BIGINT);
    CREATE TABLE releases (version TEXT PRIMARY KEY, product TEXT NOT NULL,
        security_version BIGINT NOT NULL, bundle_sha256 TEXT NOT NULL, bundle_size BIGINT NOT NULL,
        image_sha256 TEXT NOT NULL, image_size BIGINT NOT NULL, created_at BIGINT NOT NULL);
    CREATE TABLE quarantines (version TEXT NOT NULL, hardware_class TEXT NOT NULL, reason TEXT NOT NULL,
        at BIGINT NOT NULL, PRIMARY KEY (version, hardware_class));
    CREATE TABLE deltas (source_sha256 TEXT NOT NULL, version TEXT NOT NULL,
        artifact_sha256 TEXT NOT NULL, size BIGINT NOT NULL, PRIMARY KEY (source_sha256, version));
    CREATE TABLE rollouts (id TEXT PRIMARY KEY, version TEXT NOT NULL, selector TEXT NOT NULL,
        status TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL, created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL);
    CREATE TABLE decisions (id BIGSERIAL PRIMARY KEY, rollout TEXT NOT NULL, at BIGINT NOT NULL,
        kind TEXT NOT NULL, message TEXT NOT NULL);
    CREATE INDEX decisions_rollout ON decisions (rollout, id);
    CREATE TABLE desired (device TEXT PRIMARY KEY, seq BIGINT NOT NULL, rollout TEXT,
        envelope TEXT NOT NULL);
    CREATE TABLE audit (id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
    CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL);
    "#,
    // 2: per-device MQTT credentials (hashes only), for the external broker's password file
    r#"
    CREATE TABLE broker_credentials (device TEXT PRIMARY KEY, hash TEXT NOT NULL,
        updated_at BIGINT NOT NULL);
    "#,
    // 3: events are history kept by (device, seq), not behind a high-water mark, so late (reordered)
    // events are stored and a replayed one hits the unique index. The old guard kept seqs unique
    // already; the DELETE only makes sure the index can be built.
    r#"
    DELETE FROM events WHERE id NOT IN (SELECT MIN(id) FROM events GROUP BY device, seq);
    DROP INDEX events_device;
    CREATE UNIQUE INDEX events_device_seq ON events (device, seq);
    "#,
    // 4: a change feed for the engine's fleet view: every write of a device row stamps it with the
    // writing transaction's id. A reader takes the oldest transaction still running
    // (`pg_snapshot_xmin`) as its next mark: whatever commits later has an id at or above it.
    r#"
    ALTER TABLE devices ADD COLUMN changed xid8 NOT NULL DEFAULT pg_current_xact_id();
    CREATE INDEX devices_changed ON devices (changed);
    CREATE FUNCTION devices_touch() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.changed := pg_current_xact_id();
        RETURN NEW;
    END
    $$;
    CREATE TRIGGER devices_touch BEFORE INSERT OR UPDATE ON devices
        FOR EACH ROW EXECUTE FUNCTION devices_touch();
    -- and a revision per rollout row, so the engine re-reads (and re-parses) a rollout's state only
    -- when someone else wrote it
    ALTER TABLE rollouts ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
    CREATE FUNCTION rollouts_bump() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.rev := OLD.rev + 1;
        RETURN NEW;
    END
    $$;
    CREATE TRIGGER rollouts_bump BEFORE UPDATE ON rollouts
        FOR EACH ROW EXECUTE FUNCTION rollouts_bump();
    "#,
];
